import sys

from imagemesh.cli import main

sys.exit(main())
