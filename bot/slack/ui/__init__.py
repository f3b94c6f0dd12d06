"""Block Kit rendering: imports only `services`, so handlers and the runtime can share it."""
