from services.generate.server import create_server
from services.generate.settings import GenerateSettings
from shared.server import run_service

if __name__ == "__main__":
    run_service(create_server, GenerateSettings())
