"""infrarust.testing: a proxy, a fake Minecraft server and client helpers for your own pytest suite.

Installed with infrarust and registered as a pytest plugin, it gives trio tests (pytest-trio) two
fixtures: ``infrarust_proxy`` starts proxies and ``fake_backend`` starts small Minecraft servers, both on
free loopback ports in the test's nursery, both stopped when the test ends. :func:`status` and
:func:`login` talk to either like a Minecraft client. This module only re-exports the public names.
"""

from ._backend import BackendConnection as BackendConnection
from ._backend import BackendFactory as BackendFactory
from ._backend import Behavior as Behavior
from ._backend import FakeBackend as FakeBackend
from ._client import LoginAnswer as LoginAnswer
from ._client import NoAnswerError as NoAnswerError
from ._client import StatusAnswer as StatusAnswer
from ._client import login as login
from ._client import status as status
from ._proxy import NO_RATE_LIMIT as NO_RATE_LIMIT
from ._proxy import ProxyFactory as ProxyFactory
from ._proxy import Target as Target
from ._proxy import server as server
from ._proxy import testing_config as testing_config
from ._wire import DEFAULT_PROTOCOL as DEFAULT_PROTOCOL
from ._wire import MAX_PROTOCOL as MAX_PROTOCOL
from ._wire import MIN_PROTOCOL as MIN_PROTOCOL
from ._wire import offline_uuid as offline_uuid
