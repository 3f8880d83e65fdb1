"""Publish/subscribe between replicas: in-process by default, Redis pub/sub with REDIS_URL.

Topics are dotted (`instance.<id>.logs`); patterns use `*` (`instance.*.logs`). Messages are
JSON objects published after the database commit; the database stays the source of truth.
"""

from sindri_console.bus.base import Bus, Subscription, topic_matches
from sindri_console.bus.factory import create_bus

__all__ = ["Bus", "Subscription", "create_bus", "topic_matches"]
