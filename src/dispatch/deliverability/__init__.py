"""Deliverability: is the sending domain ready (doctor), and how is it doing (statistics).

`doctor` looks the domain's SPF, DKIM and DMARC records, the bounce domain's MX and the relay
up in DNS and says pass / warn / fail for each, with the record to publish. The reputation
guard that pauses a running campaign lives with the engine, in dispatch.delivery.reputation.
"""
