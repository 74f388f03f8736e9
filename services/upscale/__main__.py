from services.upscale.server import create_server
from services.upscale.settings import UpscaleSettings
from shared.server import run_service

if __name__ == "__main__":
    run_service(create_server, UpscaleSettings())
