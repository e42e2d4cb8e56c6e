"""The ground floor: errors, the strict YAML reader, shipped files, environment defaults, stop requests, servers a command owns. No torch."""
