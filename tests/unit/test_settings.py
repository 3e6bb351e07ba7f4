"""Settings.from_env: fail fast, naming the variable; refuse empty or placeholder secrets."""

from __future__ import annotations

import re

import pytest

from plugwatch import redis_urls
from plugwatch.settings import SANDBOX_API_URL, Settings, SettingsError
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET


def env(**values: str) -> dict[str, str]:
    return {"ENODE_WEBHOOK_SECRET": TEST_SECRET, **values}


def test_defaults_follow_the_design_table() -> None:
    settings = Settings.from_env(env())
    assert settings.process.redis_url == "redis://localhost:6379/0"
    assert settings.receiver.port == 8000
    assert settings.delivery.downstream_urls == ()
    assert settings.delivery.downstream_key is None
    assert settings.enode.api_url == SANDBOX_API_URL
    assert settings.receiver.max_body_bytes == 1024 * 1024
    assert settings.receiver.dedupe_ttl_seconds >= 48 * 3600, "longer than Enode's retry window"
    assert not settings.enode.api_configured


def test_missing_enode_secret_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="ENODE_WEBHOOK_SECRET"):
        Settings.from_env({})


@pytest.mark.parametrize("value", ["", "  ", ",", " , "])
def test_empty_enode_secret_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="ENODE_WEBHOOK_SECRET"):
        Settings.from_env({"ENODE_WEBHOOK_SECRET": value})


@pytest.mark.parametrize("value", ["changeme", "example-secret", "SECRET", "short-secret", f"{TEST_SECRET},xxx"])
def test_placeholder_or_short_enode_secret_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="ENODE_WEBHOOK_SECRET"):
        Settings.from_env({"ENODE_WEBHOOK_SECRET": value})


def test_several_comma_separated_secrets_are_kept_in_order_for_rotation() -> None:
    settings = Settings.from_env({"ENODE_WEBHOOK_SECRET": f" {TEST_SECRET} , old-secret-0123456789abcdef ,"})
    assert settings.receiver.enode_webhook_secrets == (TEST_SECRET, "old-secret-0123456789abcdef")


def test_processes_that_never_verify_may_run_without_an_enode_secret() -> None:
    assert Settings.from_env({}, require_enode_secret=False).receiver.enode_webhook_secrets == ()


def test_a_present_secret_is_still_checked_when_not_required() -> None:
    with pytest.raises(SettingsError, match="ENODE_WEBHOOK_SECRET"):
        Settings.from_env({"ENODE_WEBHOOK_SECRET": "changeme"}, require_enode_secret=False)


@pytest.mark.parametrize(
    ("key", "value"),
    [("PORT", "eighty"), ("PORT", "-1"), ("PORT", "80.5"), ("PORT", "99999"), ("PORT", "0"),
     ("PLUGWATCH_MAX_BODY_BYTES", "0"),
     ("PLUGWATCH_REDIS_TIMEOUT_SECONDS", "soon"), ("PLUGWATCH_DEDUPE_TTL_SECONDS", "-5"),
     ("PLUGWATCH_LOG_FORMAT", "xml"), ("PLUGWATCH_RECEIVER_HEADER_TIMEOUT_SECONDS", "0"),
     ("PLUGWATCH_RECEIVER_BODY_TIMEOUT_SECONDS", "never"), ("PLUGWATCH_RECEIVER_MAX_CONNECTIONS", "1.5")],
)
def test_unusable_numbers_and_choices_are_refused_by_name(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_env(env(**{key: value}))


def test_receiver_tuning_variables_are_read() -> None:
    settings = Settings.from_env(env(PORT="9000", PLUGWATCH_MAX_BODY_BYTES="2048",
                                     PLUGWATCH_REDIS_TIMEOUT_SECONDS="0.5", PLUGWATCH_DEDUPE_TTL_SECONDS="3600",
                                     REDIS_URL="redis://example:6380/1", PLUGWATCH_LOG_FORMAT="json"))
    assert (settings.receiver.port, settings.receiver.max_body_bytes,
            settings.process.redis_timeout_seconds) == (9000, 2048, 0.5)
    assert (settings.receiver.dedupe_ttl_seconds, settings.process.redis_url, settings.process.log_format) == (
        3600, "redis://example:6380/1", "json")


def test_slow_client_limits_default_to_10_s_headers_30_s_body_2048_connections_and_are_read() -> None:
    defaults = Settings.from_env(env())
    assert (defaults.receiver.header_timeout_seconds, defaults.receiver.body_timeout_seconds,
            defaults.receiver.max_connections) == (10.0, 30.0, 2048)
    tuned = Settings.from_env(env(PLUGWATCH_RECEIVER_HEADER_TIMEOUT_SECONDS="2.5",
                                  PLUGWATCH_RECEIVER_BODY_TIMEOUT_SECONDS="4",
                                  PLUGWATCH_RECEIVER_MAX_CONNECTIONS="100"))
    assert (tuned.receiver.header_timeout_seconds, tuned.receiver.body_timeout_seconds,
            tuned.receiver.max_connections) == (2.5, 4.0, 100)


def test_downstream_urls_require_a_signing_secret() -> None:
    with pytest.raises(SettingsError, match="DOWNSTREAM_WEBHOOK_SECRET"):
        Settings.from_env(env(DOWNSTREAM_WEBHOOK_URLS="https://a.example/hook"))


def test_downstream_urls_must_be_http() -> None:
    with pytest.raises(SettingsError, match="DOWNSTREAM_WEBHOOK_URLS"):
        Settings.from_env(env(DOWNSTREAM_WEBHOOK_URLS="ftp://a.example/hook",
                              DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET))


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h:abc/hook", "Invalid port: 'abc'"),
    ("http:///hook", "no host"),
    ("http://h:99999/hook", "port 99999 is outside 1-65535"),
    ("http://a..b/hook", "is not a domain name"),
    ("http://exa mple.com/hook", "is not a domain name"),
    ("http://[::1/hook", "Invalid port"),
    ("http://" + "a" * 64 + ".example/hook", "over-long label"),
])
def test_a_malformed_downstream_url_is_refused_in_one_line_naming_the_variable(url: str, problem: str) -> None:
    """Each of these passed the old scheme check and then crashed (or could never reach) its drainer."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env(DOWNSTREAM_WEBHOOK_URLS=f"https://ok.example/hook,{url}",
                              DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET))
    message = str(refused.value)
    assert message.startswith(f"DOWNSTREAM_WEBHOOK_URLS has an unusable URL {url!r}: ")
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize("url", ["https://[::1]:8443/hook", "http://127.0.0.1:9/hook", "http://my_sink:80/h?x=1",
                                 "https://exämple.example/hook", "http://user:pw@h.example/hook"])
def test_unusual_but_sendable_downstream_urls_are_accepted(url: str) -> None:
    settings = Settings.from_env(env(DOWNSTREAM_WEBHOOK_URLS=url, DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET))
    assert settings.delivery.downstream_urls == (url,)


@pytest.mark.parametrize("value", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="])
def test_malformed_downstream_secret_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="DOWNSTREAM_WEBHOOK_SECRET"):
        Settings.from_env(env(DOWNSTREAM_WEBHOOK_URLS="https://a.example/hook", DOWNSTREAM_WEBHOOK_SECRET=value))


def test_downstream_secret_is_decoded_and_hidden_from_repr() -> None:
    settings = Settings.from_env(env(DOWNSTREAM_WEBHOOK_URLS="https://a.example/hook, http://b.example/x",
                                     DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET))
    assert settings.delivery.downstream_urls == ("https://a.example/hook", "http://b.example/x")
    assert settings.delivery.downstream_key is not None
    assert len(settings.delivery.downstream_key) == 24
    assert "downstream_key" not in repr(settings)


def test_enode_api_is_configured_with_both_credentials_and_one_alone_is_refused() -> None:
    assert not Settings.from_env(env()).enode.api_configured
    assert Settings.from_env(env(ENODE_CLIENT_ID="id", ENODE_CLIENT_SECRET="s")).enode.api_configured
    with pytest.raises(SettingsError, match=r"^ENODE_CLIENT_SECRET is required when ENODE_CLIENT_ID is set"):
        Settings.from_env(env(ENODE_CLIENT_ID="id"))
    with pytest.raises(SettingsError, match=r"^ENODE_CLIENT_ID is required when ENODE_CLIENT_SECRET is set"):
        Settings.from_env(env(ENODE_CLIENT_SECRET="s"))


@pytest.mark.parametrize(("raw", "problem"), [
    ("notaurl", "got 'notaurl'$"),
    ("redis://:hunter2@h:abc/0", "got 'redis://:…@h:abc/0': Port could not be cast"),
])
def test_a_redis_url_redis_cannot_parse_is_refused_without_its_password(raw: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=r"^REDIS_URL must be a redis://, rediss://, unix://, redis\+sentinel://, "
                                            r"redis\+cluster:// or rediss\+cluster:// URL") as refused:
        Settings.from_env(env(REDIS_URL=raw))
    assert re.search(problem, str(refused.value)), refused.value
    assert "hunter2" not in str(refused.value)
    assert Settings.from_env(env(REDIS_URL="unix:///run/redis.sock")).process.redis_url == "unix:///run/redis.sock"


@pytest.mark.parametrize("variable", ["ENODE_API_URL", "ENODE_TOKEN_URL"])
def test_an_enode_url_that_is_no_http_url_is_refused(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} must be an https:// URL such as https://"):
        Settings.from_env(env(**{variable: "enode-api.production.enode.io"}))


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(env())
    with pytest.raises(AttributeError):
        settings.receiver.port = 1  # type: ignore[misc]


def test_action_memory_and_clock_skew_default_to_72_hours_and_5_minutes() -> None:
    settings = Settings.from_env(env())
    assert (settings.core.action_memory_seconds, settings.core.max_clock_skew_seconds) == (259_200, 300)
    assert settings.core.action_memory_seconds > 26 * 3600, "longer than Enode retries a delivery"
    custom = Settings.from_env(env(PLUGWATCH_ACTION_MEMORY_SECONDS="86400", PLUGWATCH_MAX_CLOCK_SKEW_SECONDS="30"))
    assert (custom.core.action_memory_seconds, custom.core.max_clock_skew_seconds) == (86_400, 30)


@pytest.mark.parametrize("key", ["PLUGWATCH_ACTION_MEMORY_SECONDS", "PLUGWATCH_MAX_CLOCK_SKEW_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon"])
def test_bad_action_memory_or_clock_skew_is_refused_by_name(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_env(env(**{key: value}))


def test_a_sentinel_url_names_its_sentinels_service_database_and_credentials() -> None:
    url = "redis+sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/3?sentinel_password=pw"
    settings = Settings.from_env(env(REDIS_URL=url))
    assert settings.process.redis_url == url
    target = redis_urls.parse(url)
    assert target.kind is redis_urls.Kind.SENTINEL
    assert target.nodes == (("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 3, "app", "s@cret")
    assert (target.sentinel_username, target.sentinel_password) == (None, "pw")
    assert redis_urls.parse("redis+sentinel://h:1/svc").db == 0


@pytest.mark.parametrize(("raw", "problem"), [
    ("redis+sentinel://h1:26379,h2:26379", "the service name is missing"),
    ("redis+sentinel://h1:26379/", "the service name is missing"),
    ("redis+sentinel://h1:26379/svc/x", "only a database number may follow"),
    ("redis+sentinel://h1:26379/svc/1/2", "only a database number may follow"),
    ("redis+sentinel://h1:99999/svc", "'h1:99999' has no valid port"),
    ("redis+sentinel://h1:26379,,h2/svc", "a node's host:port is missing"),
    ("redis+sentinel://:hunter2@h1:abc/svc", "'h1:abc' is no host:port"),
    ("redis+sentinel://h1/svc?socket_timeout=1", "unknown query option 'socket_timeout'"),
    ("redis+cluster://n1:7000/1", "a cluster has database 0 only"),
    ("redis+cluster://n1:7000?socket_timeout=1", "a cluster URL takes no query"),
    ("redis+cluster://n1:7000,,n2", "a node's host:port is missing"),
    ("rediss+cluster://n1:7000?socket_timeout=1", "unknown query option 'socket_timeout' \\(TLS options only"),
    ("rediss+cluster://n1:7000?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of none, optional, required"),
    ("rediss+cluster://n1:7000?ssl_check_hostname=no", "ssl_check_hostname must be true or false"),
    ("rediss+cluster://n1:7000/2", "a cluster has database 0 only"),
    ("redis+sentinels://h1/svc", "got 'redis\\+sentinels://h1/svc'$"),
])
def test_an_unusable_sentinel_or_a_cluster_url_is_refused_naming_the_variable_and_the_problem(raw: str,
                                                                                            problem: str) -> None:
    with pytest.raises(SettingsError, match=r"^REDIS_URL must be a redis://") as refused:
        Settings.from_env(env(REDIS_URL=raw))
    assert re.search(problem, str(refused.value)), refused.value
    assert "hunter2" not in str(refused.value)


def test_rq_redis_url_defaults_to_redis_url_and_may_name_another_redis() -> None:
    one = Settings.from_env({"REDIS_URL": "redis://data:6379/0"}, require_enode_secret=False).process
    assert (one.queues_url, one.queues_apart) == ("redis://data:6379/0", False)
    same = Settings.from_env({"REDIS_URL": "redis://data:6379/0", "RQ_REDIS_URL": "redis://data:6379/0"},
                             require_enode_secret=False).process
    assert not same.queues_apart
    apart = Settings.from_env({"REDIS_URL": "redis://data:6379/0", "RQ_REDIS_URL": "redis+sentinel://s1,s2/rq/1"},
                              require_enode_secret=False).process
    assert (apart.queues_url, apart.queues_apart) == ("redis+sentinel://s1,s2/rq/1", True)


def test_a_cluster_is_no_redis_for_rq() -> None:
    with pytest.raises(SettingsError, match=r"^RQ_REDIS_URL must be .*: RQ cannot run on Redis Cluster"):
        Settings.from_env({"RQ_REDIS_URL": "redis+cluster://a:7000"}, require_enode_secret=False)


def test_a_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    target = redis_urls.parse("redis+cluster://app:s3cret@n1:7000,[::1]:7001,n3")
    assert target.kind is redis_urls.Kind.CLUSTER
    assert target.nodes == (("n1", 7000), ("::1", 7001), ("n3", 6379))
    assert (target.username, target.password, target.db) == ("app", "s3cret", 0)
    assert "s3cret" not in target.shown
    assert redis_urls.parse("redis+cluster://n1:7000/").nodes == (("n1", 7000),)


def test_a_tls_cluster_url_gives_every_node_client_tls_and_its_options() -> None:
    plain = redis_urls.parse("redis+cluster://n1:7000")
    assert (plain.tls, plain.client_tls) == (None, {})
    target = redis_urls.parse("rediss+cluster://app:pw@n1:7000,n2?ssl_ca_certs=%2Fetc%2Fca.pem&ssl_cert_reqs=required"
                              "&ssl_check_hostname=false")
    assert target.kind is redis_urls.Kind.CLUSTER
    assert target.nodes == (("n1", 7000), ("n2", 6379))
    assert target.client_tls == {"ssl": True, "ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": "required",
                                 "ssl_check_hostname": False}
    assert redis_urls.parse("rediss+cluster://n1").client_tls == {"ssl": True}
    with pytest.raises(SettingsError, match=r"^RQ_REDIS_URL must be .*: RQ cannot run on Redis Cluster"):
        Settings.from_env({"RQ_REDIS_URL": "rediss+cluster://a:7000"}, require_enode_secret=False)


def test_a_cluster_redis_url_needs_rq_redis_url_and_partitions() -> None:
    cluster = "redis+cluster://n1:7000,n2:7001"
    with pytest.raises(SettingsError, match=r"^RQ_REDIS_URL is required when REDIS_URL is a Redis Cluster"):
        Settings.from_env({"REDIS_URL": cluster, "PLUGWATCH_PARTITIONS": "8"}, require_enode_secret=False)
    with pytest.raises(SettingsError, match=r"^PLUGWATCH_PARTITIONS must be at least 2 when REDIS_URL is a Redis "):
        Settings.from_env({"REDIS_URL": cluster, "RQ_REDIS_URL": "redis://rq:6379/0"}, require_enode_secret=False)
    process = Settings.from_env({"REDIS_URL": cluster, "RQ_REDIS_URL": "redis://rq:6379/0",
                                 "PLUGWATCH_PARTITIONS": "8"}, require_enode_secret=False).process
    assert (process.queues_url, process.queues_apart, process.partitions) == ("redis://rq:6379/0", True, 8)
