"""Every knob in one place, read from MEMORYOS_* variables and an optional .env file.

It lives in `schemas` because both sides need it: the producers (Redis layout, capacities) and the
workers (stores, LLM, the paper's coefficients). Producers must stay light, so this module only
depends on pydantic-settings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .query import check_max_tokens

KEY_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
# The long-term persona's share of a context's budget (MEMORYOS_PERSONA_SHARE); the packing's default too.
DEFAULT_PERSONA_SHARE = 0.1
# The longest a stored profile summary may grow (tokens, schemas/tokens.py): merging cuts a longer one, so
# the summary stays a portrait and fits the persona share of the default budget with room for facts.
PROFILE_SUMMARY_TOKENS = 120


class Settings(BaseSettings):
    """Global defaults; per-user overrides (the Memoryos class) are stored in Redis by later issues."""

    model_config = SettingsConfigDict(
        env_prefix="MEMORYOS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # an error must not echo a secret (API keys, a password in a URL)
    )

    # --- connections -------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis for short-term memory, pending batches and (unless MEMORYOS_BROKER_URL is set) the "
        "Celery broker. rediss:// enables TLS; a password goes in the URL. redis+cluster://host:port,host:port "
        "(rediss+cluster:// for TLS) names a Redis Cluster by seed nodes.",
    )
    broker_url: str | None = Field(
        None,
        description="Celery's broker when it is not the memory Redis: amqp://user:password@host:5672/vhost for "
        "RabbitMQ (quorum queues, publisher confirms) or another redis://. Required with a Redis Cluster.",
    )
    publish_min_replicas: int = Field(
        0, ge=0, le=16, description="Replicas that must have a published turn before publish returns (Redis WAIT); "
        "fewer within MEMORYOS_PUBLISH_REPLICA_TIMEOUT raises ReplicationError: publish again with the same "
        "turn_id. 0 = return once the master has it, as before.",
    )
    publish_replica_timeout: float = Field(
        1.0, gt=0, le=60, description="Seconds a publish waits for MEMORYOS_PUBLISH_MIN_REPLICAS replicas."
    )
    key_prefix: str = Field(
        "mos",
        pattern=KEY_PREFIX_PATTERN,
        description="Namespaces every Redis key, Celery key and Qdrant collection.",
    )
    qdrant_url: str | None = Field(None, description="Qdrant server; unset = embedded Qdrant Edge.")
    qdrant_api_key: SecretStr | None = None
    data_dir: Path = Field(Path("memoryos_data"), description="Embedded vector store folder.")

    # --- LLM -----------------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MEMORYOS_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("MEMORYOS_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = Field(
        60.0, gt=0, description="Seconds of silence allowed: the longest wait for the next streamed token, the "
        "first one included (a CPU model reads a 3,000-token prompt in about 30 s at 100 tokens/s before it "
        "answers). A model that keeps sending is never cut by it; see MEMORYOS_LLM_CALL_TIMEOUT."
    )
    llm_call_timeout: float = Field(
        600.0, gt=0, description="Seconds a whole call may take, however alive the model is; also the timeout of "
        "an endpoint that cannot stream (its silence lasts the whole answer)."
    )
    llm_stream: bool = Field(
        True, description="Stream answers (the timeout is then on silence). An endpoint that refuses streaming "
        "is detected and asked without it; false forces that from the start (e.g. a proxy that buffers events)."
    )
    llm_context_tokens: int = Field(
        8192, ge=256, description="The model's context window (prompt and answer together): every prompt is "
        "sized to fit with room for the answer. Set it to your model's window (e.g. 4096 for a small local model)."
    )
    llm_completion_tokens: int = Field(
        2048, ge=16, description="Tokens an answer may take (sent as max_tokens); room for a segmentation "
        "answer of a full batch. An answer cut at this length is never used as it is."
    )
    llm_max_attempts: int = Field(3, ge=1, description="Our own retries; the openai client's are off.")
    llm_backoff_base: float = Field(0.5, ge=0, description="Seconds; exponential backoff with jitter between attempts.")
    llm_backoff_max: float = Field(8.0, ge=0)
    llm_tokens_per_minute: int = Field(
        0, ge=0, description="The provider's quota, shared by every worker of the deployment through Redis; "
        "background calls wait for it, answers to users are only counted. 0 = unlimited."
    )
    llm_rate_limit_max_wait: float = Field(
        120.0, ge=0, description="Seconds a background call may wait for the token budget; longer, and the "
        "batch or persona extraction is retried later (and is not taken as an LLM failure)."
    )
    llm_completion_reserve: int = Field(
        1024, ge=1, description="Tokens reserved for an answer before a call; corrected by the reported usage."
    )

    # --- embeddings ----------------------------------------------------------------------------
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_model_path: Path | None = Field(
        None, description="A local fastembed model folder; unset = assembled from the offline extra."
    )
    embedding_batch_size: int = Field(64, ge=1, le=4096)
    embedding_threads: int | None = Field(
        None, ge=1, description="onnxruntime threads of each batch embedding run; unset = the CPUs left to batch "
        "work (CPU count minus one) divided by embedding_concurrency, at least 1."
    )
    embedding_cache_size: int = Field(
        4096, ge=0, description="Recent document vectors kept per process (about 1.6 KB each); 0 = off. A batch "
        "embeds its pages, then its topic summaries twice (plan, write): the repeats come from here."
    )
    embedding_concurrency: int | None = Field(
        None, ge=1, description="Batch embedding runs (ingestion, persona) at once per process; unset = the CPU "
        "count minus one (at least 1), so one core stays free for queries. Query embeddings never wait for "
        "these: they run on a model session of their own."
    )
    embedding_query_threads: int = Field(
        1, ge=1, description="onnxruntime threads of the query session; a query is a few tokens, so one thread "
        "is about as fast as more and never waits on a thread pool that batch runs keep busy."
    )

    # --- input limits --------------------------------------------------------------------------
    timezone: str = Field("UTC", description="Zone for timestamps given without one.")
    max_text_chars: int = Field(32_000, ge=1)
    max_metadata_bytes: int = Field(8_192, ge=2)

    # --- short-term and promotion ---------------------------------------------------------------
    short_term_capacity: int = Field(10, ge=1, le=10_000)
    promotion_batch_size: int = Field(10, ge=1, le=1_000)
    promotion_max_wait: float = Field(300.0, gt=0, description="Seconds before a partial buffer is promoted.")
    promotion_drain_batches: int = Field(
        3, ge=1, le=1_000, description="Batches one promote task drains before it hands the user back to the "
        "queue, so a user whose turns keep coming never holds a worker thread for long."
    )
    dedupe_window: float = Field(7 * 86_400.0, gt=0, description="Seconds a turn_id is remembered.")

    # --- mid-term (paper section 3.2-3.3) --------------------------------------------------------
    mid_term_capacity: int = Field(200, ge=1)
    mid_term_similarity_threshold: float = Field(0.6, description="Fscore theta for joining a segment.")
    mid_term_heat_threshold: float = Field(5.0, description="tau: heat that triggers persona extraction.")
    heat_alpha: float = 1.0
    heat_beta: float = 1.0
    heat_gamma: float = 1.0
    heat_mu: float = Field(1e7, gt=0, description="Recency time constant in seconds.")

    # --- long-term persona -----------------------------------------------------------------------
    long_term_knowledge_capacity: int = Field(100, ge=1)
    knowledge_duplicate_threshold: float = Field(0.95, ge=0, le=1)
    share_assistant_knowledge: bool = False
    persona_min_pages: int = Field(
        50, ge=1, description="New pages in hot segments before a persona extraction call: extraction is "
        "coalesced so its calls stay few (with batches of 10, one call per 50 pages keeps ingestion within 12 LLM "
        "calls per 100 turns). A user with fewer waits at most MEMORYOS_PERSONA_MAX_DELAY."
    )
    persona_max_delay: float = Field(
        900.0, gt=0, description="Seconds the first unread page of a quiet user waits before its persona is "
        "extracted with fewer than MEMORYOS_PERSONA_MIN_PAGES pages (wait_idle with flush, and "
        "force_mid_term_analysis, do not wait)."
    )

    # --- retrieval -------------------------------------------------------------------------------
    retrieval_top_segments: int = Field(5, ge=1)
    retrieval_top_pages: int | None = Field(
        None, ge=1, le=100, description="Most mid-term pages in a context; unset = as many as the token budget "
        "holds (10 when there is no budget, the paper's k)."
    )
    retrieval_top_knowledge: int = Field(10, ge=1)
    retrieval_queue_capacity: int = Field(7, ge=1)
    retrieval_timeout: float = Field(10.0, gt=0, description="Seconds an RPC persona read or operator's "
                                     "command waits for its answer.")
    retrieval_deadline_ms: int = Field(
        250, ge=1, le=600_000, description="Default deadline of producers.retrieve: past it the caller gets what "
        "Redis alone holds (short-term, pending turns, the last known profile), marked degraded."
    )
    retrieval_on_deadline: Literal["degrade", "raise"] = Field(
        "degrade", description="What producers.retrieve does past its deadline: degrade, or raise RetrievalTimeout."
    )
    retrieval_threads: int = Field(
        2, ge=1, le=64, description="Threads serving RPC retrievals in each process that consumes the retrieval "
        "queue; ingestion never runs on them."
    )
    context_max_tokens: int = Field(
        2000, ge=0, le=1_000_000, description="Token budget of a retrieved context (its prompt, estimated as "
        "schemas/tokens.py does: characters / 4); 0 = no budget. A call's max_tokens overrides it."
    )

    persona_share: float = Field(
        DEFAULT_PERSONA_SHARE, ge=0, le=0.5, description="Share of a context's token budget kept for the long-term "
        "persona (the profile's summary, then the traits and facts the query touches); what it leaves goes to "
        "pages. The default holds a profile summary (at most PROFILE_SUMMARY_TOKENS, 120) and the relevant facts "
        "in every prompt of the default 2,000-token budget (chosen on LoCoMo conv-26, checked on conv-30, "
        "bench/context.py); 0 = the persona competes with pages for room."
    )

    # --- reliability -----------------------------------------------------------------------------
    lock_ttl: float = Field(30.0, gt=1, description="Per-user lock TTL; a heartbeat renews it.")
    kick_stale_after: float = Field(60.0, gt=0, description="Re-send a pending batch's task after this.")
    sweep_interval: float = Field(5.0, gt=0, description="Beat period of the pending-batch sweep.")
    max_attempts: int = Field(5, ge=1, description="Store attempts before a batch is dead-lettered.")
    retry_backoff_base: float = Field(1.0, gt=0)
    retry_backoff_max: float = Field(300.0, gt=0)
    result_expires: int = Field(60, ge=1, description="Seconds a retrieval result lives in Redis.")

    # --- interfaces ------------------------------------------------------------------------------
    user_id: str = "default_user"
    assistant_id: str = "default_assistant"
    external_workers: bool = Field(
        False, description="The deployment runs its own workers (`memoryos worker`): the apps (HTTP API, MCP, the "
        "Memoryos class) that open the vector store themselves never start an in-process one. Off: they do, "
        "so an embedded setup or a single process with a Qdrant server works on its own."
    )

    # --- HTTP API (`memoryos serve`) and MCP over HTTP ---------------------------------------------
    api_keys: SecretStr | None = Field(
        None, description="KEY=TENANT pairs, comma-separated (e.g. 'k1...=acme,k2...=globex,k3...=*'); a tenant's "
        "user ids live in its own namespace; tenant * is an admin key that sees every tenant. Never logged."
    )
    api_max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    api_max_turns: int = Field(1000, ge=1, description="Turns per bulk request.")
    metrics_public: bool = Field(
        False, description="Serve /metrics without a key (for a scraper on a private network); the counters "
        "name no user and hold no stored text."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("context_max_tokens")
    @classmethod
    def _budget(cls, value: int) -> int:
        return int(check_max_tokens(value) or 0)

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        from schemas.tenants import parse_api_keys

        if value is not None:
            parse_api_keys(value.get_secret_value())  # its errors never quote a key
        return value

    def tenant_keys(self) -> dict[str, str]:
        """{API key: tenant}; empty when MEMORYOS_API_KEYS is unset."""
        from schemas.tenants import parse_api_keys

        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else {}

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.redis_url.split("://", 1)[0].lower().endswith("+cluster") and not self.broker_url:
            raise ValueError(
                "MEMORYOS_REDIS_URL names a Redis Cluster, which cannot be Celery's broker: set MEMORYOS_BROKER_URL "
                "to RabbitMQ (amqp://user:password@host:5672/vhost) or to a plain redis:// server"
            )
        if self.kick_stale_after <= self.sweep_interval:
            raise ValueError(
                f"MEMORYOS_KICK_STALE_AFTER ({self.kick_stale_after:g} s) must be longer than MEMORYOS_SWEEP_INTERVAL "
                f"({self.sweep_interval:g} s): raise the first or lower the second"
            )
        if self.llm_completion_tokens > self.llm_context_tokens // 2:
            raise ValueError(
                f"MEMORYOS_LLM_COMPLETION_TOKENS ({self.llm_completion_tokens}) leaves too little of the context "
                f"window MEMORYOS_LLM_CONTEXT_TOKENS ({self.llm_context_tokens}) for prompts: keep it at most half "
                "the window (lower it, or set the window your model really has)"
            )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def embedded(self) -> bool:
        return not self.qdrant_url


REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")  # seed nodes, comma-separated (producers/cluster.py)


def check_redis_url(value: str) -> str:
    """A URL redis-py can open, or ValueError saying what is expected; never quotes the URL (it may hold a
    password)."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(value)
        if url.scheme in CLUSTER_SCHEMES:
            _check_seed_nodes(url.netloc.rpartition("@")[2])
        else:
            url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL; expected e.g. redis://localhost:6379/0 (check the port)") from None
    if url.scheme not in REDIS_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(
            "must start with redis://, rediss:// (TLS), unix://, or redis+cluster:// / rediss+cluster:// for a "
            "Redis Cluster, e.g. redis://localhost:6379/0"
        )
    db = url.path.strip("/")
    if url.scheme in REDIS_SCHEMES and url.scheme != "unix" and db and not db.isdigit():
        raise ValueError("names a database that is not a number; expected e.g. redis://localhost:6379/0")
    return value


def _check_seed_nodes(hosts: str) -> None:
    """host:port[,host:port...], each port a number (ValueError otherwise)."""
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("a seed node must be host:port")


def check_zone(value: str) -> str:
    """An IANA time zone name, or ValueError saying what is expected."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Paris'") from exc
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead of mutating this.
    SettingsError (one line naming each bad MEMORYOS_ variable) when they cannot be read."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError as SourceError

    from .settings_errors import SettingsError, describe

    try:
        return Settings()
    except (ValidationError, SourceError) as exc:
        raise SettingsError(describe(exc)) from None
