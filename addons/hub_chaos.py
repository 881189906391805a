"""mitmproxy glue: `mitmdump -s addons/hub_chaos.py --set connection_strategy=lazy ...`.

Everything lives in chaos.proxy.addon and chaos.proxy.cdn_redirect; see
`mitmdump -s addons/hub_chaos.py --options` for the hub_* options.
"""

from chaos.proxy.addon import HubChaos
from chaos.proxy.cdn_redirect import CdnRedirect

# Order matters: CdnRedirect's hooks must run after HubChaos's (routing and
# faults first, then the redirect; see chaos/proxy/cdn_redirect.py).
addons = [HubChaos(), CdnRedirect()]
