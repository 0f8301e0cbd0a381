import sys

from talkset.cli import main

sys.exit(main())
