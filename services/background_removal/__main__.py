from services.background_removal.server import create_server
from services.background_removal.settings import BackgroundRemovalSettings
from shared.server import run_service

if __name__ == "__main__":
    run_service(create_server, BackgroundRemovalSettings())
