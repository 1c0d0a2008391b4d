"""``python -m mmvim.ops``: every ops backend, whether it runs here and why
not, and which one auto picks for CPU and CUDA tensors."""
from . import auto_order, get_backend, list_backends, requested_backend


def main():
    for status in list_backends():
        devices = '/'.join(status.device_types or ('any', ))
        state = 'available' if status.available else \
            f'unavailable: {status.reason}'
        print(f'{status.name:<11} {devices:<9} {state}')
    print(f'requested: {requested_backend()}')
    for device in ('cpu', 'cuda'):
        try:
            chosen = get_backend(device)
        except RuntimeError as error:
            chosen = f'none ({error})'
        print(f'{device} tensors: {chosen} (auto order: '
              f'{", ".join(auto_order(device))})')


if __name__ == '__main__':
    main()
