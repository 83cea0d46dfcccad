"""Routes from Docker and servers started on demand, against a real dockerd and real Minecraft servers."""
