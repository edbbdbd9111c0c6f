"""One module per group of steps; `shared.playbook.catalogue` imports them all."""
