"""Route providers: where servers come from besides ``servers_dir`` (Docker today), and how they merge."""

from ._docker import ContainerSkipped as ContainerSkipped
from ._docker import DockerProvider as DockerProvider
from ._docker import OnChange as OnChange
from ._docker import container_address as container_address
from ._docker import container_health as container_health
from ._docker import server_from_container as server_from_container
from ._merge import ProviderServers as ProviderServers
from ._merge import describe_source as describe_source
from ._merge import merge_servers as merge_servers
