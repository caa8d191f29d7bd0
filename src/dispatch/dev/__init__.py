"""Development-only code: benchmarks, fake servers, the demo's WeChat step, test builders.

Why apart: the service's own modules (content, render, delivery, channels, subscribers, web,
wechat) never import from here, so what runs in production is easy to see. `dispatch bench`,
`dispatch demo` and `dispatch wechat fake-server` reach in here, and so do the tests.
"""
