"""mitmproxy glue: `mitmdump -s addons/hub_chaos.py --set connection_strategy=lazy ...`
(mitmweb takes the same arguments, for watching Hub traffic in a browser).

Everything lives in chaos.proxy.addon and chaos.proxy.cdn_redirect; `chaos
proxy-options` lists the hub_* options (`mitmdump --options` prints its options
before it loads scripts, so it cannot).
"""

from chaos.proxy.addon import HubChaos
from chaos.proxy.cdn_redirect import CdnRedirect

# Order matters: CdnRedirect replaces a blob GET's answer with the 307 before
# HubChaos's faults and byte counter look at the response, and adds its probe
# header after HubChaos's faults saw the request (see chaos/proxy/cdn_redirect.py).
addons = [CdnRedirect(), HubChaos()]
