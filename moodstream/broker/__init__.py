"""The broker side shared by the apps: the embedded broker's process, its topic rotation, child process hygiene."""
