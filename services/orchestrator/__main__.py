from services.orchestrator.server import create_server
from services.orchestrator.settings import OrchestratorSettings
from shared.server import run_service

if __name__ == "__main__":
    run_service(create_server, OrchestratorSettings())
