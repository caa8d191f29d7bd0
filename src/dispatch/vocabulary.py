"""The shared vocabulary: every status, channel, outcome and event kind the service stores.

Why one module at the bottom of the import graph (it imports nothing from dispatch): a
word that is written to the database or compared in a branch is defined once, with its
meaning next to it, the way django-anymail's EventType is. The enums are StrEnums, so a
member equals its string ("sent" == DeliveryStatus.SENT) and the database keeps plain
strings; code that reads a row back compares against members without converting.

Adding a word: one member, one line, with a one-line meaning. Adding a campaign state also
needs its row in CAMPAIGN_TRANSITIONS.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "AuditAction",
    "AuditTarget",
    "CAMPAIGN_FINAL",
    "CAMPAIGN_TRANSITIONS",
    "DELIVERY_CHANNELS",
    "DELIVERY_CLAIMABLE",
    "DELIVERY_DONE",
    "DELIVERY_OPEN",
    "SUPPRESSED_SUBSCRIBER",
    "BounceKind",
    "BounceSource",
    "CampaignStatus",
    "Channel",
    "CheckStatus",
    "DeliveryStatus",
    "ErrorKind",
    "EventKind",
    "IssueStatus",
    "ReviewVerdict",
    "UserRole",
    "VersionStatus",
    "ProcessKind",
    "Outcome",
    "PauseCause",
    "SubscriberStatus",
    "SubscriptionStatus",
    "SuppressionReason",
    "WarmupState",
]


class Channel(StrEnum):
    """Where a message goes (campaigns, deliveries) or where an event came from (events)."""

    EMAIL = "email"  # an email over SMTP, one message per recipient
    WECHAT = "wechat"  # a WeChat Official Account mass send to followers' openids
    WEB = "web"  # events only: the subscriber acted on one of our pages; nothing is sent on it
    CONFIRMATION = "confirmation"  # an import's opt-in emails: a campaign without an issue


# the channels a campaign can be sent on out of the box (dispatch.channels registers them;
# a registered extra channel, e.g. the tests' webhook, is a plain string key there)
DELIVERY_CHANNELS: Final = (Channel.EMAIL, Channel.WECHAT)


class CampaignStatus(StrEnum):
    """Where a campaign (one send of an issue over one channel to some lists) stands."""

    DRAFT = "draft"  # created, nothing fanned out; may be scheduled, started or cancelled
    SCHEDULED = "scheduled"  # waiting for scheduled_at; the sweep starts it then
    RUNNING = "running"  # deliveries exist and workers send its batches
    PAUSED = "paused"  # stopped by the editor or a server's policy refusal; resumable
    FINISHED = "finished"  # no delivery is open any more (final)
    CANCELLED = "cancelled"  # stopped for good by the editor; open rows stay unsent (final)
    FAILED = "failed"  # stopped for good by an error (e.g. the channel cannot be built) (final)


# which state may follow which; every change goes through delivery.campaigns.transition
CAMPAIGN_TRANSITIONS: Final[dict[CampaignStatus, frozenset[CampaignStatus]]] = {
    CampaignStatus.DRAFT: frozenset(
        {CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.SCHEDULED: frozenset(
        {CampaignStatus.RUNNING, CampaignStatus.CANCELLED, CampaignStatus.DRAFT}
    ),
    CampaignStatus.RUNNING: frozenset(
        {
            CampaignStatus.PAUSED,
            CampaignStatus.FINISHED,
            CampaignStatus.CANCELLED,
            CampaignStatus.FAILED,
        }
    ),
    CampaignStatus.PAUSED: frozenset(
        {CampaignStatus.RUNNING, CampaignStatus.CANCELLED, CampaignStatus.FAILED}
    ),
    CampaignStatus.FINISHED: frozenset(),
    CampaignStatus.CANCELLED: frozenset(),
    CampaignStatus.FAILED: frozenset(),
}
# states nothing follows: finished_at is set on entering them
CAMPAIGN_FINAL: Final = (CampaignStatus.FINISHED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)


class DeliveryStatus(StrEnum):
    """Where one recipient of one campaign stands (the row is the source of truth)."""

    PENDING = "pending"  # waiting to be claimed by a worker
    SENDING = "sending"  # claimed: a worker holds its lease and is sending it now
    SENT = "sent"  # accepted by the next hop (SMTP 250 / WeChat msg_id) (done)
    DEFERRED = "deferred"  # a transient failure; claimable again at next_attempt_at
    FAILED = "failed"  # gave up: permanent for this message, or out of attempts (done)
    BOUNCED = "bounced"  # permanent for this address: it is suppressed too (done)
    SKIPPED = "skipped"  # not sent: unsubscribed or suppressed after fan-out (done)


# rows a worker may claim (when due)
DELIVERY_CLAIMABLE: Final = (DeliveryStatus.PENDING, DeliveryStatus.DEFERRED)
# rows that still need work: a running campaign is finished when none is left
DELIVERY_OPEN: Final = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
# rows whose story (as far as sending goes) has ended
DELIVERY_DONE: Final = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.SKIPPED,
)


class Outcome(StrEnum):
    """What a channel says about one recipient it tried; the engine decides what follows."""

    SENT = "sent"  # accepted by the next hop (SMTP 250 / WeChat msg_id)
    DEFERRED = "deferred"  # transient: retry later with backoff (4xx, timeout, -1 busy)
    BOUNCED = "bounced"  # permanent for this recipient: suppress the address (5xx)
    FAILED = "failed"  # permanent for this message, not the address's fault (bad content)
    PAUSED = "paused"  # the sender side is refused (policy, rate reply, quota): pause all
    THROTTLED = "throttled"  # provider/relay says slow down: hold it, no attempt, slow that one


class EventKind(StrEnum):
    """One normalised thing that happened to a recipient (one row in the events table)."""

    QUEUED = "queued"  # a delivery was created for the recipient at fan-out
    SENT = "sent"  # the next hop accepted the message
    DEFERRED = "deferred"  # a transient failure; another attempt is scheduled
    THROTTLED = "throttled"  # the provider said slow down: held until its backoff ends
    FAILED = "failed"  # the message will not be sent (permanent, or out of attempts)
    BOUNCED = "bounced"  # the address rejected the message permanently
    COMPLAINED = "complained"  # the recipient reported the message as spam
    SKIPPED = "skipped"  # not sent: the recipient left or was suppressed after fan-out
    UNSUBSCRIBED = "unsubscribed"  # the recipient left a list (or everything)
    SUBSCRIBED = "subscribed"  # the recipient joined a list
    CONFIRMED = "confirmed"  # the recipient confirmed a double opt-in subscription
    SUPPRESSED = "suppressed"  # the address went on the suppression list
    OPENED = "opened"  # the open pixel was loaded (first time per delivery)
    CLICKED = "clicked"  # a tracked link was followed
    MERGED = "merged"  # one mailbox's duplicate subscriber rows were merged (canonical email)
    CAMPAIGN_PAUSED = "campaign_paused"  # a campaign paused itself (data: by, the figures)
    # after the send (dispatch.bounces): one per inbound message, tied to its delivery if any
    BOUNCE_HARD = "bounce_hard"  # a later DSN says the address is dead; suppressed on email
    BOUNCE_SOFT = "bounce_soft"  # a later temporary failure; counted, the limit suppresses
    COMPLAINT = "complaint"  # a spam-button report (ARF / webhook); unsubscribed everywhere
    AUTO_REPLY = "auto_reply"  # an out-of-office reply (RFC 3834); never a bounce
    BOUNCE_UNKNOWN = "bounce_unknown"  # an inbound message not understood or ignored (reason)
    UNSUPPRESSED = "unsuppressed"  # an administrator lifted a suppression (data: the note)
    OPTIN_SENT = "optin_sent"  # a confirmation email went out (public form, import)
    OPTIN_CAPPED = "optin_capped"  # a confirmation was withheld: address or IP at its cap
    PREFS_CHANGED = "prefs_changed"  # lists/language/channel/name changed
    EMAIL_CHANGED = "email_changed"  # the address was replaced, confirmed at the new one
    BOUND = "bound"  # a WeChat openid was tied to a person (web authorisation or code)
    EXPORTED = "exported"  # the person downloaded their data
    DELETED = "deleted"  # a person was deleted (no subscriber id kept; the suppression stays)


class ErrorKind(StrEnum):
    """What kind of problem a refused request is (dispatch.errors); the web maps it to HTTP."""

    NOT_FOUND = "not_found"  # the thing the request names does not exist
    CONFLICT = "conflict"  # the request clashes with what is stored (taken, wrong state)
    INVALID = "invalid"  # the input itself is wrong (format, range, unknown value)
    FORBIDDEN = "forbidden"  # the caller may not do this
    UNAVAILABLE = "unavailable"  # something it needs is not configured or not reachable now


class BounceKind(StrEnum):
    """What an inbound message after the send says (bounce_messages.kind)."""

    HARD = "hard"  # the address is dead (5.1.x, user unknown ...)
    SOFT = "soft"  # a temporary or sender-side refusal (4.x.x, full mailbox, rate limits)
    COMPLAINT = "complaint"  # the recipient pressed the spam button
    AUTO_REPLY = "auto_reply"  # vacation / out-of-office, not a bounce
    UNKNOWN = "unknown"  # not a bounce, or ignored with a reason (loop, forged VERP token)


class BounceSource(StrEnum):
    """Which way an inbound message came in (bounce_messages.source)."""

    IMAP = "imap"  # the bounce mailbox, polled over IMAP
    POP3 = "pop3"  # the bounce mailbox, polled over POP3
    SMTP = "smtp"  # handed over by the MTA to `dispatch bounces serve`
    WEBHOOK = "webhook"  # a provider's webhook (SES via SNS, generic signed JSON)
    FILE = "file"  # `dispatch bounces ingest` of .eml / .mbox files


class IssueStatus(StrEnum):
    """Whether an issue may be sent."""

    DRAFT = "draft"  # stored, not yet sendable
    PUBLISHED = "published"  # final: campaigns may send it


class VersionStatus(StrEnum):
    """Where one saved version of an issue's source stands in review (dispatch.editorial)."""

    DRAFT = "draft"  # saved by an editor; may be changed (a new version) or submitted
    SUBMITTED = "submitted"  # handed to the reviewers; waits for approval or rejection
    APPROVED = "approved"  # approved by enough reviewers: this exact content may be sent


class ReviewVerdict(StrEnum):
    """What a reviewer said about a submitted version (issue_reviews.verdict)."""

    APPROVED = "approved"  # the reviewer approves this content hash
    CHANGES_REQUESTED = "changes_requested"  # back to draft, with the reviewer's comments


class UserRole(StrEnum):
    """What a user of the admin may do; each role may do everything of those before it."""

    EDITOR = "editor"  # write and import issues, preview, test send, submit for review
    REVIEWER = "reviewer"  # also approve or send back other people's versions, send
    ADMIN = "admin"  # everything: lists, subscribers, users, pause and cancel


class SubscriberStatus(StrEnum):
    """A person's own status; anything but active overrides all their subscriptions."""

    ACTIVE = "active"  # reachable on every list they are subscribed to
    UNSUBSCRIBED = "unsubscribed"  # left everything
    BOUNCED = "bounced"  # their address bounced permanently
    COMPLAINED = "complained"  # they reported a message as spam
    BLOCKLISTED = "blocklisted"  # an operator blocked them


# subscriber statuses that keep a person's address on the suppression list
SUPPRESSED_SUBSCRIBER: Final = (
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
    SubscriberStatus.BLOCKLISTED,
)


class SubscriptionStatus(StrEnum):
    """A person's membership of one list."""

    UNCONFIRMED = "unconfirmed"  # double opt-in list: waiting for the confirmation click
    CONFIRMED = "confirmed"  # receives the list's campaigns
    UNSUBSCRIBED = "unsubscribed"  # left this list


class SuppressionReason(StrEnum):
    """Why an address may not be sent to."""

    BOUNCED = "bounced"  # a permanent bounce
    COMPLAINED = "complained"  # a spam complaint
    BLOCKLISTED = "blocklisted"  # an operator blocked it
    MANUAL = "manual"  # added by hand (CLI, admin, CSV import)


class ProcessKind(StrEnum):
    """A long-running process that records heartbeats (so commands can tell when none runs)."""

    WORKER = "worker"  # a Celery worker: sends the queued batches
    BEAT = "beat"  # Celery beat: starts due schedules, retries, returns expired leases


class CheckStatus(StrEnum):
    """A `dispatch doctor` finding about the sending domain (deliverability.doctor)."""

    PASS = "pass"  # the requirement is met
    WARN = "warn"  # mail goes out, but a receiver may mind, or it could not be probed
    FAIL = "fail"  # receivers refuse or junk the mail until this is fixed


class PauseCause(StrEnum):
    """Who paused a campaign by itself (data.by of its campaign_paused event)."""

    REPUTATION = "reputation"  # hard bounces or complaints over the recent window (the guard)


class WarmupState(StrEnum):
    """What one day of a domain's warm-up plan was (dispatch.delivery.warmup.schedule)."""

    FIRST = "first"  # day one of the plan: the starting allowance
    GROWN = "grown"  # the day before went well: the allowance grew
    HELD_RATES = "held_rates"  # bounces or complaints over the threshold: held back
    HELD_QUIET = "held_quiet"  # less than half of the day before was used: held (proves nothing)
    REDUCED = "reduced"  # bounces or complaints over twice the threshold: halved
    WARM = "warm"  # the allowance reached the target: uncapped from then on
    AHEAD = "ahead"  # a day still to come, projected as if every day goes well


class AuditAction(StrEnum):
    """What a person (or the CLI, or the service itself) did: one row of the audit log."""

    PUBLISH = "publish"  # an issue was stored from its source (CLI, upload, import)
    EDIT = "edit"  # an issue's source was changed (a new version saved)
    RESTORE = "restore"  # an earlier version of an issue was made the current one
    SUBMIT = "submit"  # a version was submitted for review
    APPROVE = "approve"  # a reviewer approved a version (data: the content hash)
    REJECT = "reject"  # a reviewer sent a version back to draft with comments
    SEND = "send"  # a campaign was started to real lists
    TEST_SEND = "test_send"  # a test message went to a few addresses
    SCHEDULE = "schedule"  # a campaign was scheduled for a date and time
    UNSCHEDULE = "unschedule"  # a campaign's schedule was taken back
    PAUSE = "pause"  # a running campaign was paused by a person
    RESUME = "resume"  # a paused campaign was resumed
    CANCEL = "cancel"  # a campaign was stopped for good
    IMPORT = "import"  # subscribers (CSV) or a document (Word) were imported
    EXPORT = "export"  # subscribers, suppressions or the audit log were downloaded
    ADD_SUBSCRIBER = "add_subscriber"  # an administrator added a person (CLI, API)
    CHANGE_SUBSCRIBER = "change_subscriber"  # a person's fields were changed (before/after)
    SUBSCRIBE = "subscribe"  # an administrator put a person on lists
    UNSUBSCRIBE = "unsubscribe"  # an administrator took a person off one list or all
    DELETE_SUBSCRIBER = "delete_subscriber"  # a person was deleted (the row keeps the id only)
    BULK_ACTION = "bulk_action"  # one bulk action on many people (action, list, count, ids)
    CREATE_LIST = "create_list"  # a mailing list was created
    CHANGE_LIST = "change_list"  # a list's settings were changed (before/after)
    DELETE_LIST = "delete_list"  # a list and its subscriptions were deleted
    SUPPRESS = "suppress"  # an address was put on the suppression list by hand
    UNSUPPRESS = "unsuppress"  # a suppression was lifted by hand
    CHANGE_SETTING = "change_setting"  # a setting (branding, review rules) was changed
    CREATE_USER = "create_user"  # an admin user was created
    CHANGE_USER = "change_user"  # a user's role was changed
    DISABLE_USER = "disable_user"  # a user may no longer log in or use tokens
    ENABLE_USER = "enable_user"  # a disabled user may log in again
    CREATE_TOKEN = "create_token"  # an API token was created (shown once)
    REVOKE_TOKEN = "revoke_token"  # an API token was revoked
    LOG_IN = "log_in"  # a user logged in to the admin
    LOG_IN_FAILED = "log_in_failed"  # a log-in was refused (wrong password, unknown, disabled)
    LOG_OUT = "log_out"  # a user logged out


class AuditTarget(StrEnum):
    """What kind of thing an audit row is about (audit_log.target_kind)."""

    ISSUE = "issue"  # target_id: the issue's slug
    VERSION = "version"  # target_id: an issue version's id
    CAMPAIGN = "campaign"  # target_id: the campaign's id
    LIST = "list"  # target_id: the list's slug
    SUBSCRIBER = "subscriber"  # target_id: the subscriber's id
    SUPPRESSION = "suppression"  # target_id: the address (canonical)
    SETTING = "setting"  # target_id: the setting group (e.g. branding)
    USER = "user"  # target_id: the user's email
    TOKEN = "token"  # target_id: the token's id
    AUDIT = "audit"  # the audit log itself (its CSV export)
