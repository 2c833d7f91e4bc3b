import sys

from resnet_recipe.cli import main

sys.exit(main())
