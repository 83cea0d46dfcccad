"""End-to-end tests: real Minecraft software (PrismarineJS minecraft-protocol) through the proxy."""
