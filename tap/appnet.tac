# twistd -ny tap/appnet.tac
#
# The same service tree as `twistd -n appnet`. Arguments come from
# $APPNET_ARGS, e.g. APPNET_ARGS="--config tap/example.toml".
import os
import shlex

from appnet.tap import makeApplication

application = makeApplication(shlex.split(os.environ.get("APPNET_ARGS", "")))
