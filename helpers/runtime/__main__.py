import sys

from helpers.runtime.run import main

sys.exit(main())
