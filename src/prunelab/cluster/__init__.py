"""Several hosts: a shared tracking server, studies sharded over hosts, and a launcher."""
