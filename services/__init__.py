"""The domain: quoting, refund cases, intake, disputes, the finance side, the outside systems'
clients and the store. It imports no chat, no HTTP framework and no stand-in."""
