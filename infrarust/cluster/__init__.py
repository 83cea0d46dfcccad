"""A fleet of infrarust instances sharing bans, rate limits and player counts through Redis.

:class:`Fleet` is what the proxy asks per connection; :class:`RedisClient` and
:class:`RedisSubscription` are the Trio Redis client it is built on (hiredis' sans-IO parser).
"""

from ._admin import FleetAdmin as FleetAdmin
from ._admin import InstanceView as InstanceView
from ._client import RedisClient as RedisClient
from ._client import RedisError as RedisError
from ._client import RedisReplyError as RedisReplyError
from ._client import RedisSubscription as RedisSubscription
from ._client import RedisUnavailable as RedisUnavailable
from ._fleet import Fleet as Fleet
from ._fleet import default_instance_id as default_instance_id
from ._keys import FleetKeys as FleetKeys
from ._keys import ban_key as ban_key
