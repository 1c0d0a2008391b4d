"""``python -m mmvim.ops``: every ops backend, whether it runs here and why
not (with the fix), and which one runs for CPU and CUDA tensors. It never
fails on a bad setting: diagnosing one is what it is for."""
from . import auto_order, get_backend, list_backends, requested_backend


def main():
    for status in list_backends():
        devices = '/'.join(status.device_types or ('any', ))
        state = 'available' if status.available else \
            f'unavailable: {status.reason}\n{"":21}fix: {status.fix}'
        print(f'{status.name:<11} {devices:<9} {state}')
    try:
        print(f'requested: {requested_backend()}')
    except ValueError as error:
        print(f'requested: invalid: {error}')
        return
    for device in ('cpu', 'cuda'):
        try:
            chosen = get_backend(device)
        except RuntimeError as error:
            chosen = f'none ({error})'
        print(f'{device} tensors: {chosen} (auto order: '
              f'{", ".join(auto_order(device))})')


if __name__ == '__main__':
    main()
