import hashlib
import hmac
import secrets
import zoneinfo

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

HEX_COLOUR = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour like #3b82f6.")


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin).")


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **fields):
        if not email:
            raise ValueError("A user needs an email address to log in.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)  # None gives an unusable password: no login until invited
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, email):
        # Log-in looks users up here: Ana@Example.com and ana@example.com are one account.
        return self.get(email__iexact=email)

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with their email.

    Users first seen in ingested usage (by email or by an external id) are
    created without a usable password: they appear in the data but cannot log
    in until an admin sets one.
    """

    email = models.EmailField(unique=True, null=True, blank=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can log into the Django admin.")
    date_joined = models.DateTimeField(default=timezone.now)
    live_mode = models.BooleanField(
        default=False, help_text="Live Mode on the Usage and Overview pages: new requests pushed as they arrive."
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [
            # Emails are compared case-insensitively: Ana@x and ana@x are one person.
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self):
        return self.email or self.name or f"user #{self.pk}"

    @property
    def display_name(self) -> str:
        return self.name or self.email or f"user #{self.pk}"


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone; day boundaries and charts use it.",
    )
    currency = models.CharField(max_length=3, default="USD", validators=[RegexValidator(r"^[A-Z]{3}$")])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class Team(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    colour = models.CharField(max_length=7, default="#6366f1", validators=[HEX_COLOUR])

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="team_unique_name_per_org")]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MANAGER = "manager", "Manager"
    MEMBER = "member", "Member"


class Membership(models.Model):
    """A user's place in one org: their role and their teams.

    `external_id` is how ingestion clients may name this user instead of an
    email (an SSO subject, an employee number); it is unique within the org.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    teams = models.ManyToManyField(Team, blank=True, related_name="memberships")
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["org", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "org"], name="membership_unique_user_org"),
            models.UniqueConstraint(
                fields=["org", "external_id"],
                condition=~Q(external_id=""),
                name="membership_unique_external_id_per_org",
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self):
        return f"{self.user} in {self.org} ({self.role})"


class Tag(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="tag_unique_name_per_org")]

    def __str__(self):
        return self.name


class ApiKeyScope(models.TextChoices):
    INGEST = "ingest", "Ingest"
    READ = "read", "Read"


class OtlpUsageSourceSetting(models.TextChoices):
    """Where the OTLP intake takes a Claude Code session's usage from (DESIGN §12.3.3)."""

    AUTO = "auto", "Auto: metrics until the session's events arrive, then events"
    LOGS = "logs", "Logs (events) only"
    METRICS = "metrics", "Metrics only"


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A credential for the ingest and read APIs.

    The full key is `tly_<prefix>_<secret>`. Only the prefix (to find the row)
    and a SHA-256 of the secret are stored. The secret is 32 random bytes, so
    a fast hash is enough: there is nothing to brute-force.
    """

    PREFIX_LENGTH = 12

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="api_keys",
        help_text="A read key with an owner reads with that user's visibility; without one, the whole org.",
    )
    default_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    default_project = models.ForeignKey(
        "metering.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    scope_ingest = models.BooleanField("ingest scope", default=True)
    scope_read = models.BooleanField("read scope", default=False)
    otlp_usage_source = models.CharField(
        "OTLP usage source",
        max_length=10,
        choices=OtlpUsageSourceSetting.choices,
        default=OtlpUsageSourceSetting.AUTO,
        help_text="Where OTLP exports with this key take Claude Code usage from. Choose logs when its clients "
        "send events as well as metrics without session ids.",
    )
    otlp_use_client_cost = models.BooleanField(
        "OTLP: use the client's cost",
        default=True,
        help_text="Off: ignore the cost Claude Code reports (an estimate at list price) and price its usage "
        "from the price table.",
    )
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["org", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope_ingest=True) | Q(scope_read=True),
                name="apikey_has_a_scope",
                violation_error_message="Give the key at least one scope: ingest, read or both.",
            ),
            models.CheckConstraint(condition=Q(secret_hash__regex=r"^[0-9a-f]{64}$"), name="apikey_secret_is_hashed"),
            models.CheckConstraint(
                condition=Q(otlp_usage_source__in=OtlpUsageSourceSetting.values), name="apikey_otlp_usage_source_valid"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def clean(self):
        # A key's defaults and owner must be of its own org, or it would attribute usage across orgs.
        if self.org_id is None:
            return
        errors = {}
        for field in ("default_team", "default_project"):
            target = getattr(self, field)
            if target is not None and target.org_id != self.org_id:
                errors[field] = "Choose one of this organization's."
        if self.owner_id and not Membership.objects.filter(user_id=self.owner_id, org_id=self.org_id).exists():
            errors["owner"] = "The owner must be a member of this organization."
        if errors:
            raise ValidationError(errors)

    @property
    def scopes(self) -> list[str]:
        return [s for s, on in ((ApiKeyScope.INGEST, self.scope_ingest), (ApiKeyScope.READ, self.scope_read)) if on]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def set_new_secret(self) -> str:
        """Give the key a fresh prefix and secret; returns the full key, to be shown once."""
        self.prefix = secrets.token_hex(self.PREFIX_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        self.secret_hash = self.hash_secret(secret)
        return f"tly_{self.prefix}_{secret}"

    def check_secret(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, self.hash_secret(secret))

    @classmethod
    def split(cls, full_key: str) -> tuple[str, str] | None:
        """(prefix, secret) of a presented key, or None if it is not shaped like one of ours."""
        parts = full_key.split("_", 2)
        if len(parts) != 3 or parts[0] != "tly" or len(parts[1]) != cls.PREFIX_LENGTH or not parts[2]:
            return None
        return parts[1], parts[2]
