"""mitmproxy glue: `mitmdump -s addons/hub_chaos.py --set connection_strategy=lazy ...`.

Everything lives in chaos.proxy.addon; see `mitmdump -s addons/hub_chaos.py --options`
for the hub_* options.
"""

from chaos.proxy.addon import HubChaos

addons = [HubChaos()]
