"""All models, imported here so Alembic and the app see one metadata.

One module per area; each area adds its tables through its own migration in
dispatch/migrations/versions/.
"""

from dispatch.models.audit import *  # noqa: F403
from dispatch.models.base import Base, utcnow
from dispatch.models.bounce import *  # noqa: F403
from dispatch.models.delivery import *  # noqa: F403
from dispatch.models.editorial import *  # noqa: F403
from dispatch.models.event import EVENT_KINDS, CampaignRollup, Event, EventDaily
from dispatch.models.heartbeat import *  # noqa: F403
from dispatch.models.issue import ISSUE_STATUSES, Issue
from dispatch.models.report import *  # noqa: F403
from dispatch.models.security import *  # noqa: F403
from dispatch.models.sending import *  # noqa: F403
from dispatch.models.site import *  # noqa: F403
from dispatch.models.subscriber import *  # noqa: F403
from dispatch.models.tally import *  # noqa: F403
from dispatch.models.web import *  # noqa: F403
from dispatch.models.wechat import *  # noqa: F403

__all__ = [
    "Base",
    "utcnow",
    "Event",
    "EventDaily",
    "CampaignRollup",
    "EVENT_KINDS",
    "Issue",
    "ISSUE_STATUSES",
]
