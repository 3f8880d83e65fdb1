"""The sindri.yaml subset (20-ops §7.3–§7.6), the official templates (§8.2–§8.4) and their derivations."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sindri_console.domains.deployments.official_templates import (
    OfficialTemplate,
    OfficialTemplateError,
    _template_from,
    load_official_templates,
    slug_error,
)
from sindri_console.domains.deployments.sindri_yaml import (
    BUILTIN_PROFILES,
    DEPLOYMENT_PROVIDERS,
    MAX_DEPTH,
    MAX_YAML_BYTES,
    RESERVED_SECRET_EXACT,
    RESERVED_SECRET_PREFIXES,
    FieldError,
    ParsedYaml,
    ValidationResult,
    apply_overrides,
    canonical_provider,
    declared_config,
    declared_extensions,
    declared_region,
    deployment_provider,
    docker_host_violation,
    hardening_violations,
    parse_sindri_yaml,
    reserved_secret_violations,
    size_to_bytes,
    sizing,
    validate_sindri_yaml,
)

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # property tests need hypothesis; the example tests below do not
    st = None

MINIMAL_YAML = 'version: "3.0"\nname: dep-a\ndeployment:\n  provider: docker\nextensions:\n  active: [git]\n'

BASE: dict[str, Any] = {
    "version": "3.0",
    "name": "dep-a",
    "deployment": {"provider": "docker"},
    "extensions": {"active": ["git"]},
}


def doc_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted paths set (`deployment__resources__memory="8GB"`); the value DELETE removes."""
    doc = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = doc
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return doc


DELETE = object()


def parsed(text: str) -> ParsedYaml:
    result = parse_sindri_yaml(text)
    assert isinstance(result, ParsedYaml), result
    return result


def parse_errors(text: Any) -> list[FieldError]:
    result = parse_sindri_yaml(text)
    assert isinstance(result, list), f"expected errors, got {result!r}"
    assert result and all(isinstance(e, FieldError) for e in result)
    return result


def fields(result: ValidationResult | list[FieldError]) -> list[str]:
    errors = result.errors if isinstance(result, ValidationResult) else result
    return [error.field for error in errors]


def only_error(doc: Any, **kwargs: Any) -> FieldError:
    result = validate_sindri_yaml(doc, **kwargs)
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


# --------------------------------------------------------------------------------------------------
# Parsing (§7.3 first paragraph)


def test_minimal_document_parses_and_validates_without_warnings():
    result = parsed(MINIMAL_YAML)
    assert result.document == BASE
    assert result.size_bytes == len(MINIMAL_YAML.encode())
    assert result.text == MINIMAL_YAML
    validation = validate_sindri_yaml(result)
    assert validation.valid
    assert validation.errors == [] and validation.warnings == []
    assert validation.as_validation() == {"valid": True, "errors": []}


def test_syntax_error_names_line_and_column():
    (error,) = parse_errors("name: [unclosed")
    assert error.field == ""
    assert error.message.startswith("Invalid YAML at line ") and ", column " in error.message


def test_syntax_error_on_a_later_line():
    (error,) = parse_errors("version: '3.0'\nname: x\ndeployment:\n  provider: fly\n bad: [\n")
    assert "line 5" in error.message


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_document_is_refused(text):
    (error,) = parse_errors(text)
    assert "empty" in error.message


@pytest.mark.parametrize(
    "text",
    [MINIMAL_YAML + "---\nname: other\n", "---\na: 1\n---\nb: 2\n", "a: 1\n...\n---\nb: 2\n"],
)
def test_more_than_one_document_is_refused(text):
    (error,) = parse_errors(text)
    assert "more than one document" in error.message


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("- a\n- b\n", "list"),
        ("just text\n", "single value"),
        ("42\n", "single value"),
        ("---\n", "single value"),
    ],
)
def test_root_must_be_a_mapping(text, kind):
    (error,) = parse_errors(text)
    assert "must be a mapping" in error.message and kind in error.message


def test_anchor_is_refused_even_without_alias():
    (error,) = parse_errors("a: &x 1\nb: 2\n")
    assert "Anchors" in error.message and "line 1" in error.message


def test_billion_laughs_is_refused_before_expansion():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
    (error,) = parse_errors("\n".join(lines) + "\n")
    assert "Anchors" in error.message


def test_alias_without_visible_anchor_is_a_syntax_error_or_refusal():
    (error,) = parse_errors("a: *nothing\n")
    assert error.field == ""


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['true']\n",
        "a: !!python/name:os.system\n",
        "a: !!str 1\n",
        "a: !!binary aGVsbG8=\n",
        "a: !custom value\n",
        "a: !!set {x, y}\n",
        "a: ! plain\n",
        "!!map {a: 1}\n",
        "a: !!seq [1]\n",
    ],
)
def test_tags_are_refused(text):
    (error,) = parse_errors(text)
    assert "Tags" in error.message


def test_merge_keys_are_refused():
    (error,) = parse_errors("deployment:\n  <<: {provider: docker}\n")
    assert "merge keys" in error.message


def test_duplicate_keys_are_refused_with_position():
    (error,) = parse_errors(MINIMAL_YAML + "name: other\n")
    assert "duplicate key 'name'" in error.message
    assert "line 7" in error.message


def test_duplicate_nested_keys_are_refused():
    (error,) = parse_errors("providers:\n  docker:\n    privileged: false\n    privileged: true\n")
    assert "duplicate key 'privileged'" in error.message


def nested(depth: int) -> str:
    # `depth` collections in total, the root mapping included.
    return "a: " + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "\n"


def test_nesting_up_to_the_limit_is_accepted():
    assert isinstance(parse_sindri_yaml(nested(MAX_DEPTH)), ParsedYaml)


def test_nesting_past_the_limit_is_refused():
    (error,) = parse_errors(nested(MAX_DEPTH + 1))
    assert f"more than {MAX_DEPTH} levels" in error.message


def test_very_deep_nesting_does_not_recurse():
    text = "a: " + "[" * 32_000 + "]" * 32_000
    assert len(text) <= MAX_YAML_BYTES
    (error,) = parse_errors(text)
    assert f"more than {MAX_DEPTH} levels" in error.message


def padded(size: int, filler: str = "x") -> str:
    head = MINIMAL_YAML + "# "
    remaining = size - len(head.encode()) - 1
    count = remaining // len(filler.encode())
    return head + filler * count + "\n"


def test_exactly_the_size_limit_is_accepted():
    text = padded(MAX_YAML_BYTES)
    assert len(text.encode()) == MAX_YAML_BYTES
    assert isinstance(parse_sindri_yaml(text), ParsedYaml)


def test_one_byte_over_the_limit_is_refused():
    text = padded(MAX_YAML_BYTES) + "\n"
    (error,) = parse_errors(text)
    assert str(MAX_YAML_BYTES) in error.message


def test_size_is_counted_in_utf8_bytes_not_characters():
    text = padded(MAX_YAML_BYTES + 2, filler="é")
    assert len(text) <= MAX_YAML_BYTES < len(text.encode())
    (error,) = parse_errors(text)
    assert "bytes" in error.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: 2024-13-45\n", "month"),
        ("a: " + "9" * 5000 + "\n", "too many digits"),
        ("a: \x00\n", "U+0000"),
        ("a: \x07\n", "U+0007"),
        ("a: \ud800\n", "UTF-8"),
        ("? [a, b]\n: c\n", "unhashable"),
        ("? {a: 1}\n: c\n", "unhashable"),
    ],
)
def test_values_python_cannot_build_come_back_as_errors(text, fragment):
    (error,) = parse_errors(text)
    assert fragment in error.message


@pytest.mark.parametrize("value", [None, b"name: x", 42, ["a"]])
def test_non_text_input_is_refused(value):
    (error,) = parse_errors(value)
    assert "string" in error.message


def test_a_plain_equals_sign_is_text():
    assert parsed("a: =\n").document == {"a": "="}


# --------------------------------------------------------------------------------------------------
# Field errors


def test_field_error_prefixing():
    assert FieldError("name", "m").under("yamlConfig") == FieldError("yamlConfig.name", "m")
    assert FieldError("", "m").under("yamlConfig") == FieldError("yamlConfig", "m")
    assert FieldError("[0]", "m").under("list") == FieldError("list[0]", "m")
    assert FieldError("a.b", "m").under("") == FieldError("a.b", "m")
    assert FieldError("extensions.active[2]", "m").as_dict() == {
        "field": "extensions.active[2]",
        "message": "m",
    }


def test_every_error_is_reported_at_once():
    doc = {
        "version": 3,
        "name": "Bad_Name",
        "deployment": {"provider": "heroku", "resources": {"cpus": 0}},
        "extensions": {"active": ["git", "Git"], "autoInstall": "yes"},
        "secrets": [{"name": "api_token", "source": "file"}],
    }
    result = validate_sindri_yaml(doc)
    assert not result.valid
    assert set(fields(result)) == {
        "version",
        "name",
        "deployment.provider",
        "deployment.resources.cpus",
        "extensions.active[1]",
        "extensions.autoInstall",
        "secrets[0].name",
        "secrets[0].source",
    }
    validation = result.as_validation()
    assert validation["valid"] is False
    assert {"field", "message"} == set(validation["errors"][0])
    assert all(e["message"] for e in validation["errors"])


def test_validate_accepts_parsed_or_plain_documents():
    assert validate_sindri_yaml(parsed(MINIMAL_YAML)).valid
    assert validate_sindri_yaml(BASE).valid


@pytest.mark.parametrize("doc", [[], "text", None, 3])
def test_validate_refuses_non_mapping_documents(doc):
    error = only_error(doc)
    assert error.field == ""


# --------------------------------------------------------------------------------------------------
# version and name


@pytest.mark.parametrize("value", ["3.0", 3.0, "3.1", 3.5, "03.0", "3.10"])
def test_version_accepts_major_minor_text_or_number(value):
    result = validate_sindri_yaml(doc_with(version=value))
    assert result.valid and result.warnings == []


@pytest.mark.parametrize("value", ["3", 3, "v3.0", "3.0.1", "3.0\n", "", True, ["3.0"], "٣.٠"])
def test_version_refuses_other_forms(value):
    assert only_error(doc_with(version=value)).field == "version"


def test_version_is_required():
    error = only_error(doc_with(version=DELETE))
    assert error.field == "version" and "required" in error.message


@pytest.mark.parametrize("value", ["2.0", 4.1, "1.0"])
def test_other_major_version_is_a_warning_not_an_error(value):
    result = validate_sindri_yaml(doc_with(version=value))
    assert result.valid
    assert len(result.warnings) == 1 and "version" in result.warnings[0]


@pytest.mark.parametrize("value", ["a", "dep-a", "a1", "a" * 63, "a-b-c", "x9"])
def test_valid_names(value):
    assert validate_sindri_yaml(doc_with(name=value)).valid


@pytest.mark.parametrize(
    "value", ["A", "Dep", "1abc", "-abc", "abc-", "a" * 64, "a_b", "a.b", "", "abc\n", 12, None]
)
def test_invalid_names(value):
    error = only_error(doc_with(name=value))
    assert error.field == "name"


# --------------------------------------------------------------------------------------------------
# deployment


def test_deployment_is_required_and_must_be_a_mapping():
    assert only_error(doc_with(deployment=DELETE)).field == "deployment"
    assert only_error(doc_with(deployment="docker")).field == "deployment"


def test_provider_is_required():
    error = only_error(doc_with(deployment={}))
    assert error.field == "deployment.provider" and "required" in error.message


@pytest.mark.parametrize("provider", [*DEPLOYMENT_PROVIDERS, "docker-compose"])
def test_every_deployment_provider_is_accepted(provider):
    doc = doc_with(deployment__provider=provider)
    assert validate_sindri_yaml(doc).valid
    assert deployment_provider(doc) == ("docker" if provider == "docker-compose" else provider)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("k8s", "kubernetes"),
        ("kube", "kubernetes"),
        ("fly.io", "fly"),
        ("flyio", "fly"),
        ("FLY", "fly"),
        (" Docker ", "docker"),
        ("Docker-Compose", "docker"),
    ],
)
def test_provider_aliases_are_accepted(spelling, canonical):
    doc = doc_with(deployment__provider=spelling)
    assert validate_sindri_yaml(doc).valid
    assert deployment_provider(doc) == canonical


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("do", "digitalocean"),
        ("gce", "gcp"),
        ("google", "gcp"),
        ("gcloud", "gcp"),
        ("ec2", "aws"),
        ("amazon", "aws"),
        ("az", "azure"),
        ("k8s", "kubernetes"),
        ("docker-compose", "docker"),
        ("ssh", "ssh"),
    ],
)
def test_canonical_provider_applies_every_alias(spelling, canonical):
    assert canonical_provider(spelling) == canonical
    assert canonical_provider(spelling.upper()) == canonical


@pytest.mark.parametrize("provider", ["aws", "ec2", "gcp", "gce", "azure", "az", "digitalocean", "do"])
def test_cloud_providers_point_to_devpod(provider):
    error = only_error(doc_with(deployment__provider=provider))
    assert error.field == "deployment.provider"
    assert "devpod" in error.message


@pytest.mark.parametrize("provider", ["heroku", "", "  ", 3, ["docker"]])
def test_unknown_providers_are_refused(provider):
    error = only_error(doc_with(deployment__provider=provider))
    assert error.field == "deployment.provider"
    assert "fly" in error.message


@pytest.mark.parametrize(
    ("image", "ok"), [("ghcr.io/x/y:1", True), ("i" * 512, True), ("", False), ("i" * 513, False), (5, False)]
)
def test_image_length(image, ok):
    result = validate_sindri_yaml(doc_with(deployment__image=image))
    assert result.valid is ok
    if not ok:
        assert fields(result) == ["deployment.image"]


@pytest.mark.parametrize("memory", ["256MB", "1GB", "8GB", "1024GB", "1048576MB", "0256MB"])
def test_memory_in_range(memory):
    assert validate_sindri_yaml(doc_with(deployment__resources__memory=memory)).valid


@pytest.mark.parametrize(
    ("memory", "fragment"),
    [
        ("255MB", "out of range"),
        ("0GB", "out of range"),
        ("1025GB", "out of range"),
        ("1048577MB", "out of range"),
        ("9" * 40 + "GB", "out of range"),
        ("8 GB", "size such as"),
        ("8gb", "size such as"),
        ("8G", "size such as"),
        ("8GiB", "size such as"),
        ("٨GB", "size such as"),
        ("8GB\n", "size such as"),
        (8, "size such as"),
    ],
)
def test_memory_refused(memory, fragment):
    error = only_error(doc_with(deployment__resources__memory=memory))
    assert error.field == "deployment.resources.memory" and fragment in error.message


@pytest.mark.parametrize("cpus", [1, 2, 256])
def test_cpus_in_range(cpus):
    assert validate_sindri_yaml(doc_with(deployment__resources__cpus=cpus)).valid


@pytest.mark.parametrize("cpus", [0, 257, -1, 2.0, True, "2", None])
def test_cpus_refused(cpus):
    assert only_error(doc_with(deployment__resources__cpus=cpus)).field == "deployment.resources.cpus"


def test_resources_must_be_a_mapping():
    assert only_error(doc_with(deployment__resources=["8GB"])).field == "deployment.resources"


def test_full_gpu_mapping_is_accepted():
    gpu = {"enabled": True, "type": "nvidia", "count": 8, "tier": "gpu-xlarge", "memory": "24GB"}
    assert validate_sindri_yaml(doc_with(deployment__resources__gpu=gpu)).valid
    for tier in ("gpu-small", "gpu-medium", "gpu-large"):
        assert validate_sindri_yaml(doc_with(deployment__resources__gpu={"type": "amd", "tier": tier})).valid


@pytest.mark.parametrize(
    ("gpu", "field"),
    [
        ({"vendor": "nvidia"}, "deployment.resources.gpu.vendor"),
        ({"enabled": "yes"}, "deployment.resources.gpu.enabled"),
        ({"type": "intel"}, "deployment.resources.gpu.type"),
        ({"count": 0}, "deployment.resources.gpu.count"),
        ({"count": 9}, "deployment.resources.gpu.count"),
        ({"count": 1.5}, "deployment.resources.gpu.count"),
        ({"tier": "gpu-huge"}, "deployment.resources.gpu.tier"),
        ({"memory": "24 GB"}, "deployment.resources.gpu.memory"),
        ("nvidia", "deployment.resources.gpu"),
    ],
)
def test_gpu_refusals(gpu, field):
    assert only_error(doc_with(deployment__resources__gpu=gpu)).field == field


@pytest.mark.parametrize(
    "path",
    [
        "/home/developer/workspace",
        "/alt/home/developer/workspace",
        "/workspace",
        "/variable",
        "/usrdata",
        "/data/../home/x",
    ],
)
def test_workspace_paths_accepted(path):
    assert validate_sindri_yaml(doc_with(deployment__volumes__workspace__path=path)).valid


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "//",
        "/etc",
        "/etc/",
        "/etc/sindri",
        "/var/lib/x",
        "/usr/local/ws",
        "/root",
        "/proc/self",
        "/lib64",
        "/home/../etc",
        "//etc",
        "/./dev/x",
        "workspace",
        "~/workspace",
        "",
        42,
    ],
)
def test_workspace_paths_refused(path):
    assert (
        only_error(doc_with(deployment__volumes__workspace__path=path)).field
        == "deployment.volumes.workspace.path"
    )


@pytest.mark.parametrize("size", ["1GB", "1024MB", "50GB", "65536GB"])
def test_workspace_size_in_range(size):
    assert validate_sindri_yaml(doc_with(deployment__volumes__workspace__size=size)).valid


@pytest.mark.parametrize("size", ["1023MB", "0GB", "65537GB", "70000GB", "50", 50, "50 GB"])
def test_workspace_size_refused(size):
    assert (
        only_error(doc_with(deployment__volumes__workspace__size=size)).field
        == "deployment.volumes.workspace.size"
    )


def test_volumes_shapes():
    assert only_error(doc_with(deployment__volumes="big")).field == "deployment.volumes"
    assert only_error(doc_with(deployment__volumes__workspace="50GB")).field == "deployment.volumes.workspace"
    assert validate_sindri_yaml(doc_with(deployment__volumes={"cache": {"size": "1GB"}})).valid


# --------------------------------------------------------------------------------------------------
# extensions


def test_extensions_is_required():
    assert only_error(doc_with(extensions=DELETE)).field == "extensions"


def test_legacy_extension_list_is_refused_with_a_pointer():
    error = only_error(doc_with(extensions=["git", "python3"]))
    assert error.field == "extensions" and "use extensions.active" in error.message


def test_extensions_must_be_a_mapping():
    assert only_error(doc_with(extensions="git")).field == "extensions"


def test_unknown_extension_key():
    assert only_error(doc_with(extensions__install=["x"])).field == "extensions.install"


def test_profile_and_active_together_are_refused():
    error = only_error(doc_with(extensions={"profile": "minimal", "active": ["git"]}))
    assert error.field == "extensions" and "not both" in error.message


def test_neither_profile_nor_active_is_refused():
    assert only_error(doc_with(extensions={"autoInstall": True})).field == "extensions"


def test_additional_needs_a_profile():
    assert (
        only_error(doc_with(extensions={"active": ["git"], "additional": ["zsh"]})).field
        == "extensions.additional"
    )


@pytest.mark.parametrize("profile", BUILTIN_PROFILES)
def test_builtin_profiles_are_known(profile):
    assert validate_sindri_yaml(doc_with(extensions={"profile": profile, "additional": ["zsh@5.9"]})).valid


def test_unknown_profile_is_refused_unless_the_registry_knows_it():
    doc = doc_with(extensions={"profile": "nonexistent"})
    error = only_error(doc)
    assert error.field == "extensions.profile" and "minimal" in error.message
    assert validate_sindri_yaml(doc, known_profiles=["nonexistent"]).valid
    assert only_error(doc_with(extensions={"profile": ["minimal"]})).field == "extensions.profile"


@pytest.mark.parametrize(
    "name", ["git", "python3", "node-lts", "a.b_c-d", "git@2.45.1", "x@v1+build.2", "0ext", "a" * 64]
)
def test_extension_names_accepted(name):
    assert validate_sindri_yaml(doc_with(extensions={"active": [name]})).valid


@pytest.mark.parametrize(
    "name", ["Git", "-git", ".git", "a" * 65, "git@", "git@" + "1" * 65, "git@1 2", "git@1@2", "", 5, None]
)
def test_extension_names_refused(name):
    assert only_error(doc_with(extensions={"active": ["zsh", name]})).field == "extensions.active[1]"


def test_extension_list_bounds():
    assert only_error(doc_with(extensions={"active": []})).field == "extensions.active"
    names = [f"ext{i}" for i in range(200)]
    assert validate_sindri_yaml(doc_with(extensions={"active": names})).valid
    assert only_error(doc_with(extensions={"active": [*names, "ext200"]})).field == "extensions.active"
    assert only_error(doc_with(extensions={"active": "git"})).field == "extensions.active"


def test_duplicate_extensions_are_refused_by_name():
    result = validate_sindri_yaml(doc_with(extensions={"active": ["git", "zsh", "git@2.45", "zsh"]}))
    assert fields(result) == ["extensions.active[2]", "extensions.active[3]"]
    assert "index 0" in result.errors[0].message


def test_additional_list_is_checked_like_active():
    result = validate_sindri_yaml(doc_with(extensions={"profile": "minimal", "additional": ["ok", "Bad"]}))
    assert fields(result) == ["extensions.additional[1]"]


def test_auto_install_must_be_boolean():
    assert validate_sindri_yaml(doc_with(extensions__autoInstall=False)).valid
    assert only_error(doc_with(extensions__autoInstall="false")).field == "extensions.autoInstall"


# --------------------------------------------------------------------------------------------------
# secrets (schema)


def test_valid_secrets():
    secrets = [
        {"name": "OPENAI_API_KEY", "source": "env", "required": True},
        {"name": "GITHUB_TOKEN", "source": "env"},
    ]
    assert validate_sindri_yaml(doc_with(secrets=secrets)).valid


@pytest.mark.parametrize(
    ("secrets", "field", "fragment"),
    [
        ("API_KEY", "secrets", "list"),
        (["API_KEY"], "secrets[0]", "mapping"),
        ([{"source": "env"}], "secrets[0].name", "required"),
        ([{"name": "api_key", "source": "env"}], "secrets[0].name", "upper-case"),
        ([{"name": "1KEY", "source": "env"}], "secrets[0].name", "upper-case"),
        ([{"name": "K" * 129, "source": "env"}], "secrets[0].name", "upper-case"),
        ([{"name": "API_KEY"}], "secrets[0].source", "required"),
        ([{"name": "API_KEY", "source": "file"}], "secrets[0].source", "console's server"),
        ([{"name": "API_KEY", "source": "vault"}], "secrets[0].source", "Vault"),
        ([{"name": "API_KEY", "source": "ENV"}], "secrets[0].source", "must be `env`"),
        ([{"name": "API_KEY", "source": "env", "required": "yes"}], "secrets[0].required", "true or false"),
        (
            [{"name": "API_KEY", "source": "env", "fromFile": "~/.key"}],
            "secrets[0].fromFile",
            "console's server",
        ),
        ([{"name": "DATABASE_URL", "source": "env"}], "secrets[0].name", "DATABASE_URL"),
        ([{"name": "SINDRI_TOKEN", "source": "env"}], "secrets[0].name", "SINDRI_"),
    ],
)
def test_secret_refusals(secrets, field, fragment):
    error = only_error(doc_with(secrets=secrets))
    assert error.field == field
    assert fragment in error.message


def test_secret_limit_and_duplicates():
    many = [{"name": f"KEY_{i}", "source": "env"} for i in range(100)]
    assert validate_sindri_yaml(doc_with(secrets=many)).valid
    assert only_error(doc_with(secrets=[*many, {"name": "KEY_X", "source": "env"}])).field == "secrets"
    dup = [{"name": "API_KEY", "source": "env"}, {"name": "API_KEY", "source": "env"}]
    error = only_error(doc_with(secrets=dup))
    assert error.field == "secrets[1].name" and "secrets[0]" in error.message


def test_file_secret_from_mimir_is_refused():
    secrets = [{"name": "API_TOKEN", "source": "file", "path": "/etc/passwd", "mountPath": "/x"}]
    assert fields(validate_sindri_yaml(doc_with(secrets=secrets))) == ["secrets[0].source"]


# --------------------------------------------------------------------------------------------------
# providers, distro, unknown keys


def test_providers_pass_through():
    providers = {"fly": {"region": "sjc", "cpuKind": "performance", "anything": [1, 2]}, "custom": "x"}
    assert validate_sindri_yaml(doc_with(providers=providers)).valid


@pytest.mark.parametrize(
    ("providers", "field"),
    [
        ("fly", "providers"),
        ({"fly": {"region": "r" * 65}}, "providers.fly.region"),
        ({"fly": {"region": ""}}, "providers.fly.region"),
        ({"docker": {"region": 5}}, "providers.docker.region"),
        ({"devpod": {"type": "aws", "aws": {"instanceType": ""}}}, "providers.devpod.aws.instanceType"),
        ({"devpod": {"type": "gcp", "gcp": {"machineType": 4}}}, "providers.devpod.gcp.machineType"),
        ({"devpod": {"type": "azure", "azure": {"vmSize": "v" * 65}}}, "providers.devpod.azure.vmSize"),
        (
            {"devpod": {"type": "digitalocean", "digitalocean": {"size": ["s"]}}},
            "providers.devpod.digitalocean.size",
        ),
    ],
)
def test_provider_refusals(providers, field):
    assert only_error(doc_with(providers=providers)).field == field


def test_unknown_top_level_keys_are_warnings():
    result = validate_sindri_yaml(doc_with(hooks={"postCreate": "echo hi"}, labels=["a"]))
    assert result.valid
    assert len(result.warnings) == 2
    assert any("'hooks'" in warning for warning in result.warnings)


@pytest.mark.parametrize("distro", ["ubuntu", "Fedora", "opensuse"])
def test_known_distro_needs_no_warning(distro):
    result = validate_sindri_yaml(doc_with(distro=distro))
    assert result.valid and result.warnings == []


@pytest.mark.parametrize("distro", ["arch", 7])
def test_unknown_distro_is_a_warning(distro):
    result = validate_sindri_yaml(doc_with(distro=distro))
    assert result.valid and len(result.warnings) == 1 and "distro" in result.warnings[0]


# --------------------------------------------------------------------------------------------------
# Reserved names (§7.4)


@pytest.mark.parametrize("name", sorted(RESERVED_SECRET_EXACT))
def test_every_exact_reserved_name_is_refused(name):
    (error,) = reserved_secret_violations(doc_with(secrets=[{"name": name, "source": "env"}]), ())
    assert error.field == "secrets[0].name" and name in error.message
    (body_error,) = reserved_secret_violations(BASE, [name.lower()])
    assert body_error.field == f"secrets.{name.lower()}"


@pytest.mark.parametrize("prefix", RESERVED_SECRET_PREFIXES)
def test_every_reserved_prefix_is_refused(prefix):
    name = f"{prefix}THING"
    (error,) = reserved_secret_violations(doc_with(secrets=[{"name": name, "source": "env"}]), ())
    assert prefix in error.message
    assert reserved_secret_violations(BASE, [name.lower()])[0].field == f"secrets.{name.lower()}"
    assert reserved_secret_violations(BASE, [prefix.capitalize() + "x"])


@pytest.mark.parametrize(
    "name",
    ["OPENAI_API_KEY", "GITHUB_TOKEN", "ANTHROPIC_API_KEY", "PATHS", "MY_PATH", "HOMEBREW_X", "GITLAB_TOKEN"],
)
def test_ordinary_names_are_not_reserved(name):
    assert reserved_secret_violations(doc_with(secrets=[{"name": name, "source": "env"}]), [name]) == []


def test_reserved_names_are_case_insensitive_in_the_body():
    found = reserved_secret_violations(BASE, ["sindri_foo", "Path", "database_url", "fine_name"])
    assert fields(found) == ["secrets.sindri_foo", "secrets.Path", "secrets.database_url"]


def test_reserved_names_in_env_mappings_anywhere():
    doc = doc_with(
        deployment__env={"PATH": "/x", "FOO": "1"},
        providers={
            "docker": {"environment": {"ld_preload": "/evil.so", "OK": "1"}},
            "kubernetes": {"pods": [{"Env": {"KUBECONFIG": "/k"}}]},
        },
        hooks={"env": ["NODE_OPTIONS=--require /x", "FINE=1", "HOME"]},
    )
    found = reserved_secret_violations(doc, ())
    assert sorted(fields(found)) == sorted(
        [
            "deployment.env.PATH",
            "providers.docker.environment.ld_preload",
            "providers.kubernetes.pods[0].Env.KUBECONFIG",
            "hooks.env[0]",
            "hooks.env[2]",
        ]
    )
    validation = validate_sindri_yaml(doc)
    assert sorted(fields(validation)) == sorted(fields(found))


def test_env_keys_that_are_not_reserved_pass():
    doc = doc_with(deployment__env={"EDITOR": "vim", "LANG": "C.UTF-8"})
    assert reserved_secret_violations(doc, ()) == []
    assert validate_sindri_yaml(doc).valid


def test_reserved_violations_list_yaml_and_body_with_prefix():
    doc = doc_with(secrets=[{"name": "DATABASE_URL", "source": "env"}], deployment__env={"SHELL": "/bin/sh"})
    found = reserved_secret_violations(doc, ["AWS_SECRET_ACCESS_KEY"], yaml_field_prefix="yamlConfig")
    assert fields(found) == [
        "yamlConfig.secrets[0].name",
        "yamlConfig.deployment.env.SHELL",
        "secrets.AWS_SECRET_ACCESS_KEY",
    ]


def test_reserved_check_tolerates_odd_documents():
    assert reserved_secret_violations({"secrets": "x", "env": "PATH"}, ()) == []
    assert reserved_secret_violations({"secrets": [None, {"name": 3}]}, [None]) == []  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------------
# Hardening (§7.5)


@pytest.mark.parametrize(
    ("docker", "field"),
    [
        ({"privileged": True}, "providers.docker.privileged"),
        ({"privileged": "true"}, "providers.docker.privileged"),
        ({"network": "host"}, "providers.docker.network"),
        ({"network": "HOST"}, "providers.docker.network"),
        ({"dind": {"enabled": True, "mode": "privileged"}}, "providers.docker.dind.mode"),
        ({"dind": {"mode": "socket"}}, "providers.docker.dind.mode"),
        ({"runtime": "kata"}, "providers.docker.runtime"),
        ({"runtime": "nvidia"}, "providers.docker.runtime"),
    ],
)
def test_privileged_docker_options_are_refused_unless_allowed(docker, field):
    doc = doc_with(providers={"docker": docker})
    (error,) = hardening_violations(doc, allow_privileged_docker=False, allowed_docker_hosts=[])
    assert error.field == field
    assert "DEPLOY_ALLOW_PRIVILEGED_DOCKER" in error.message
    assert hardening_violations(doc, allow_privileged_docker=True, allowed_docker_hosts=[]) == []


def test_privileged_options_are_checked_whatever_the_provider():
    doc = doc_with(deployment__provider="fly", providers={"docker": {"privileged": True}})
    assert fields(hardening_violations(doc, False, [])) == ["providers.docker.privileged"]


@pytest.mark.parametrize(
    "docker",
    [
        {"privileged": False, "network": "bridge", "runtime": "runc"},
        {"runtime": "sysbox-runc", "dind": {"enabled": True, "mode": "sysbox"}},
        {"runtime": "auto", "dind": {"mode": "auto"}, "network": "none"},
        {"ports": ["3000:3000"]},
    ],
)
def test_safe_docker_options_pass(docker):
    assert hardening_violations(doc_with(providers={"docker": docker}), False, []) == []


def test_all_privileged_options_reported_together():
    docker = {"privileged": True, "network": "host", "dind": {"mode": "socket"}, "runtime": "kata"}
    found = hardening_violations(doc_with(providers={"docker": docker}), False, [])
    assert len(found) == 4


def test_secret_sources_are_refused_even_with_the_allow_switch():
    secrets = [
        {"name": "A_KEY", "source": "file", "path": "/x", "mountPath": "/y"},
        {"name": "B_KEY", "source": "vault", "vaultPath": "p", "vaultKey": "k"},
        {"name": "C_KEY", "source": "env", "fromFile": "/srv/vault.key"},
        {"name": "D_KEY", "source": "env"},
    ]
    found = hardening_violations(doc_with(secrets=secrets), True, ["unix:///var/run/docker.sock"])
    assert fields(found) == ["secrets[0].source", "secrets[1].source", "secrets[2].fromFile"]


def test_devpod_docker_host_must_be_allow_listed():
    doc = doc_with(
        deployment__provider="devpod",
        providers={"devpod": {"type": "docker", "docker": {"dockerHost": "tcp://203.0.113.5:2376"}}},
    )
    (error,) = hardening_violations(doc, True, [])
    assert error.field == "providers.devpod.docker.dockerHost" and "DEPLOY_DOCKER_HOSTS" in error.message
    (error,) = hardening_violations(doc, True, ["tcp://10.0.0.5:2376"])
    assert "tcp://10.0.0.5:2376" in error.message
    assert hardening_violations(doc, False, ["tcp://10.0.0.5:2376", "tcp://203.0.113.5:2376"]) == []
    # Exact match only: no prefix or case games.
    assert hardening_violations(doc, False, ["TCP://203.0.113.5:2376"])
    assert hardening_violations(doc, False, ["tcp://203.0.113.5"])


def test_hardening_tolerates_odd_documents():
    assert hardening_violations({"providers": {"docker": "privileged"}, "secrets": ["x"]}, False, []) == []
    assert hardening_violations([], False, []) == []  # type: ignore[arg-type]


def test_body_docker_host():
    allowed = ["tcp://10.0.0.5:2376"]
    assert docker_host_violation(None, "fly", allowed) is None
    assert docker_host_violation("tcp://10.0.0.5:2376", "docker", allowed) is None
    assert docker_host_violation("tcp://10.0.0.5:2376", "docker-compose", allowed) is None
    wrong_provider = docker_host_violation("tcp://10.0.0.5:2376", "fly", allowed)
    assert wrong_provider is not None and wrong_provider.field == "dockerHost"
    not_listed = docker_host_violation("tcp://203.0.113.5:2376", "docker", allowed)
    assert not_listed is not None and not_listed.field == "dockerHost"
    assert docker_host_violation("tcp://10.0.0.5:2376", "docker", []) is not None


# --------------------------------------------------------------------------------------------------
# Derivations: extensions (§8.4), sizing (§7.6), declared config (§10.1), overrides (§7.2)


def test_declared_extensions_from_active_without_versions():
    doc = doc_with(extensions={"active": ["python3", "git@2.45.1", "zsh", "python3@3.12"]})
    assert declared_extensions(doc) == ["python3", "git", "zsh"]


def test_declared_extensions_from_profile_additional():
    assert declared_extensions(
        doc_with(extensions={"profile": "minimal", "additional": ["rust@1.80", "tmux"]})
    ) == [
        "rust",
        "tmux",
    ]
    assert declared_extensions(doc_with(extensions={"profile": "minimal"})) == []


def test_declared_extensions_from_legacy_list():
    assert declared_extensions(parsed("name: x\nextensions:\n  - python3\n  - node@20\n")) == [
        "python3",
        "node",
    ]


def test_declared_extensions_of_odd_documents():
    assert declared_extensions({}) == []
    assert declared_extensions({"extensions": "git"}) == []
    assert declared_extensions({"extensions": [1, None, "git", {"name": "x"}]}) == ["git"]


@pytest.mark.parametrize(
    ("size", "disk_gb"),
    [("50GB", 50), ("1GB", 1), ("1536MB", 2), ("1024MB", 1), ("1025MB", 2), ("1MB", 1), ("65536GB", 65536)],
)
def test_disk_gb_rounds_up_to_whole_gib(size, disk_gb):
    assert sizing(doc_with(deployment__volumes__workspace__size=size)) == (disk_gb, None)


def test_sizing_without_workspace_size():
    assert sizing(BASE) == (None, None)
    assert sizing(doc_with(deployment__volumes__workspace__size="0MB")) == (None, None)


@pytest.mark.parametrize(
    ("machine", "key", "value"),
    [
        ("aws", "instanceType", "t3.large"),
        ("gcp", "machineType", "e2-standard-4"),
        ("azure", "vmSize", "Standard_D4s_v3"),
        ("digitalocean", "size", "s-4vcpu-8gb"),
    ],
)
def test_size_id_from_devpod(machine, key, value):
    doc = doc_with(
        deployment={"provider": "devpod", "volumes": {"workspace": {"size": "1536MB"}}},
        providers={"devpod": {"type": machine, machine: {key: value}}},
    )
    assert validate_sindri_yaml(doc).valid
    assert sizing(doc) == (2, value)


def test_size_id_only_for_devpod_and_its_chosen_type():
    devpod = {"type": "aws", "aws": {"instanceType": "t3.large"}, "gcp": {"machineType": "e2-small"}}
    assert sizing(doc_with(providers={"devpod": devpod})) == (None, None)
    assert sizing(doc_with(deployment__provider="devpod", providers={"devpod": devpod})) == (None, "t3.large")
    ssh = {"type": "ssh", "aws": {"instanceType": "t3.large"}}
    assert sizing(doc_with(deployment__provider="devpod", providers={"devpod": ssh})) == (None, None)
    assert sizing(doc_with(deployment__provider="devpod", providers={"devpod": {"type": "aws"}})) == (
        None,
        None,
    )


def test_size_to_bytes():
    assert size_to_bytes("1MB") == 2**20
    assert size_to_bytes("3GB") == 3 * 2**30
    assert size_to_bytes("3gb") is None
    assert size_to_bytes(3) is None


def test_declared_config_shape():
    doc = parsed(
        'version: "3.0"\nname: dep-c\ndistro: Fedora\n'
        "deployment:\n  provider: docker-compose\n  resources: {memory: 8GB, cpus: 4}\n"
        "  volumes: {workspace: {size: 1536MB}}\n"
        "extensions:\n  active: [zsh, git@2.45.1, python3]\n"
        "secrets:\n  - {name: OPENAI_API_KEY, source: env}\n  - {name: SINDRI_EXTRA, source: env}\n"
        "providers:\n  docker: {region: local-1}\n"
    )
    declared = declared_config(doc, extra_secret_names=["BODY_ONLY"], known_secret_names=["OPENAI_API_KEY"])
    assert declared == {
        "name": "dep-c",
        "provider": "docker",
        "region": "local-1",
        "distro": "fedora",
        "profile": None,
        "extensions": [
            {"name": "git", "version": "2.45.1"},
            {"name": "python3", "version": None},
            {"name": "zsh", "version": None},
        ],
        "extensionsComplete": True,
        "resources": {"cpus": 4, "memoryBytes": 8 * 2**30, "memory": "8GB"},
        "workspaceSizeBytes": 1536 * 2**20,
        "workspaceSize": "1536MB",
        "secrets": [
            {"name": "BODY_ONLY", "valueKnown": False},
            {"name": "OPENAI_API_KEY", "valueKnown": True},
        ],
    }


def test_declared_config_overrides_and_nulls():
    declared = declared_config(BASE, provider="k8s", region="eu-west-1")
    assert declared["provider"] == "kubernetes"
    assert declared["region"] == "eu-west-1"
    assert declared["distro"] is None
    assert declared["resources"] == {"cpus": None, "memoryBytes": None, "memory": None}
    assert declared["workspaceSizeBytes"] is None and declared["secrets"] == []


def test_declared_config_with_profiles():
    doc = doc_with(extensions={"profile": "minimal", "additional": ["git@2.45", "tmux"]})
    unknown = declared_config(doc)
    assert unknown["profile"] == "minimal"
    assert unknown["extensionsComplete"] is False
    assert unknown["extensions"] == [{"name": "git", "version": "2.45"}, {"name": "tmux", "version": None}]
    known = declared_config(doc, profile_extensions={"minimal": ["python", "git", "nodejs@20"]})
    assert known["extensionsComplete"] is True
    assert known["extensions"] == [
        {"name": "git", "version": "2.45"},
        {"name": "nodejs", "version": "20"},
        {"name": "python", "version": None},
        {"name": "tmux", "version": None},
    ]


def test_declared_config_never_raises_on_odd_documents():
    for odd in ({}, {"deployment": "x", "extensions": ["a"], "secrets": "s"}, [], {"extensions": []}):
        declared = declared_config(odd)  # type: ignore[arg-type]
        assert set(declared) >= {"provider", "region", "extensions", "extensionsComplete", "resources"}
    assert declared_config({"extensions": []})["extensionsComplete"] is False


def test_declared_region():
    assert declared_region(doc_with(providers={"docker": {"region": "home"}})) == "home"
    assert (
        declared_region(doc_with(deployment__provider="Fly.io", providers={"fly": {"region": "sjc"}}))
        == "sjc"
    )
    assert (
        declared_region(
            doc_with(deployment__provider="docker-compose", providers={"docker-compose": {"region": "x"}})
        )
        == "x"
    )
    assert declared_region(doc_with(providers={"fly": {"region": "sjc"}})) is None
    assert declared_region({}) is None


def test_apply_overrides_sets_name_and_provider():
    source = parsed(
        "# a template\nversion: '3.0'\nname: python-ml\ndeployment:\n  provider: fly\n"
        "  resources: {memory: 8GB}\nextensions:\n  active: [python3]\nextra: 1\n"
    )
    text = apply_overrides(source, name="ml-1", provider="k8s")
    result = parsed(text)
    assert "name: ml-1" in text.splitlines()
    assert list(result.document) == ["version", "name", "deployment", "extensions", "extra"]
    assert result.document["deployment"] == {"provider": "kubernetes", "resources": {"memory": "8GB"}}
    assert result.document["version"] == "3.0"
    assert source.document["name"] == "python-ml"  # the original is left alone
    assert source.document["deployment"]["provider"] == "fly"
    assert validate_sindri_yaml(result).valid


def test_apply_overrides_keeps_what_is_not_overridden():
    assert parsed(apply_overrides(BASE)).document == BASE
    assert parsed(apply_overrides(BASE, provider="heroku")).document["deployment"]["provider"] == "heroku"
    created = parsed(apply_overrides(doc_with(deployment=DELETE), provider="docker")).document
    assert created["deployment"] == {"provider": "docker"}


def test_apply_overrides_writes_shared_values_out_in_full():
    shared = ["git", "zsh"]
    doc = {**BASE, "extensions": {"active": shared}, "copy": shared}
    text = apply_overrides(doc, name="x")
    assert "&" not in text and "*" not in text
    assert parsed(text).document["copy"] == shared


# --------------------------------------------------------------------------------------------------
# Official templates (§8.3) and slugs (§8.2)

EXPECTED_TEMPLATES = [
    ("tmpl_python_ml", "python-ml", "Python ML Stack", "ai", ("e2b", "fly", "docker")),
    (
        "tmpl_fullstack_ts",
        "fullstack-typescript",
        "Full-Stack TypeScript",
        "language",
        ("fly", "docker", "devpod"),
    ),
    ("tmpl_rust_systems", "rust-systems", "Rust Systems", "language", ("fly", "docker")),
    (
        "tmpl_k8s_infra",
        "kubernetes-infra",
        "Kubernetes / Infrastructure",
        "infrastructure",
        ("kubernetes", "fly"),
    ),
]

EXPECTED_CONTENT = {
    "python-ml": {
        "version": "3.0",
        "name": "python-ml",
        "deployment": {
            "provider": "fly",
            "resources": {"memory": "8GB", "cpus": 4},
            "volumes": {"workspace": {"size": "50GB"}},
        },
        "extensions": {"active": ["python3", "pytorch", "jupyter", "claude-code", "git"]},
    },
    "fullstack-typescript": {
        "version": "3.0",
        "name": "fullstack-typescript",
        "deployment": {
            "provider": "fly",
            "resources": {"memory": "4GB", "cpus": 2},
            "volumes": {"workspace": {"size": "20GB"}},
        },
        "extensions": {
            "active": ["node-lts", "docker-in-docker", "postgresql-client", "claude-code", "git", "zsh"]
        },
    },
    "rust-systems": {
        "version": "3.0",
        "name": "rust-systems",
        "deployment": {
            "provider": "fly",
            "resources": {"memory": "4GB", "cpus": 2},
            "volumes": {"workspace": {"size": "20GB"}},
        },
        "extensions": {"active": ["rust", "git", "zsh", "tmux"]},
    },
    "kubernetes-infra": {
        "version": "3.0",
        "name": "kubernetes-infra",
        "deployment": {"provider": "kubernetes", "resources": {"memory": "4GB", "cpus": 2}},
        "extensions": {"active": ["kubectl", "helm", "terraform", "ansible", "git"]},
    },
}


def test_official_templates_match_the_contract():
    templates = load_official_templates()
    assert [
        (t.id, t.slug, t.name, t.category, t.provider_recommendations) for t in templates
    ] == EXPECTED_TEMPLATES
    descriptions = {t.slug: t.description for t in templates}
    assert (
        descriptions["python-ml"] == "Python 3 with PyTorch, Jupyter and Claude Code for ML experimentation."
    )
    assert (
        descriptions["kubernetes-infra"]
        == "kubectl, helm, terraform and ansible for cloud infrastructure work."
    )
    for template in templates:
        assert template.revision == 1
        assert parsed(template.yaml_content).document == EXPECTED_CONTENT[template.slug]
        assert not template.yaml_content.startswith("#")  # the spec's `# slug` labels are not content


@pytest.mark.parametrize("template", load_official_templates(), ids=lambda t: t.slug)
def test_every_official_template_is_valid(template: OfficialTemplate):
    document = parsed(template.yaml_content)
    result = validate_sindri_yaml(document)
    assert result.as_validation() == {"valid": True, "errors": []}
    assert result.warnings == []
    assert reserved_secret_violations(document, ()) == []
    assert hardening_violations(document, False, []) == []
    assert slug_error(template.slug) is None


def test_official_template_derivations():
    by_slug = {t.slug: t for t in load_official_templates()}
    python_ml = by_slug["python-ml"]
    assert python_ml.extensions == ["python3", "pytorch", "jupyter", "claude-code", "git"]
    assert python_ml.provider == "fly"
    assert sizing(parsed(python_ml.yaml_content)) == (50, None)
    assert by_slug["kubernetes-infra"].provider == "kubernetes"
    assert sizing(parsed(by_slug["kubernetes-infra"].yaml_content)) == (None, None)
    deployed = parsed(apply_overrides(parsed(python_ml.yaml_content), name="ml-1"))
    assert deployed.document["name"] == "ml-1" and validate_sindri_yaml(deployed).valid


def test_broken_template_data_is_reported():
    good = {
        "id": "tmpl_x",
        "slug": "x",
        "name": "X",
        "category": "AI",
        "description": "d",
        "providerRecommendations": ["fly", "k8s"],
        "revision": 2,
        "yamlContent": MINIMAL_YAML,
    }
    template = _template_from(good, "x.yaml")
    assert template.category == "ai"
    assert template.provider_recommendations == ("fly", "kubernetes")
    for key, bad in [
        ("slug", "Bad Slug"),
        ("name", ""),
        ("revision", 0),
        ("revision", True),
        ("providerRecommendations", ["heroku"]),
        ("providerRecommendations", "fly"),
        ("yamlContent", None),
    ]:
        with pytest.raises(OfficialTemplateError):
            _template_from({**good, key: bad}, "x.yaml")
    with pytest.raises(OfficialTemplateError):
        _template_from(["not", "a", "mapping"], "x.yaml")


@pytest.mark.parametrize("slug", ["python-ml", "a", "a1", "0", "x" * 128, "my-template-2"])
def test_valid_slugs(slug):
    assert slug_error(slug) is None


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "Invalid Slug!",
        "Python-ML",
        "-a",
        "a-",
        "a_b",
        "x" * 129,
        None,
        "01arz3ndektsv4rrffq69g5fav",  # ULID shape
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "0190d8c2-5a4e-7b3c-9d2e-1f0a2b3c4d5e",  # UUID shape
    ],
)
def test_invalid_slugs(slug):
    assert slug_error(slug) is not None


# --------------------------------------------------------------------------------------------------
# Properties: nothing a client sends makes these functions raise

if st is not None:
    YAML_PIECES = st.sampled_from(
        [
            "a",
            "name",
            "deployment",
            "provider",
            "extensions",
            "active",
            "secrets",
            "env",
            "PATH",
            ":",
            ": ",
            "\n",
            "  ",
            "- ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a ",
            "*a",
            "!!str ",
            "!t ",
            "---\n",
            "...\n",
            "'",
            '"',
            "#",
            "? ",
            "<<: ",
            "|",
            ">",
            "2024-13-45",
            "0x1F",
            "1e9",
            ".inf",
            "~",
            "null",
            "yes",
            "=",
            "%YAML 1.1\n",
            "\t",
            "\\",
            "é",
            "\x00",
            "\ufeff",
        ]
    )
    yaml_like = st.lists(YAML_PIECES, max_size=60).map("".join)

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
    )
    documents = st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.one_of(
                    st.sampled_from(
                        [
                            "version",
                            "name",
                            "deployment",
                            "provider",
                            "resources",
                            "memory",
                            "cpus",
                            "gpu",
                            "volumes",
                            "workspace",
                            "path",
                            "size",
                            "extensions",
                            "profile",
                            "active",
                            "additional",
                            "secrets",
                            "source",
                            "fromFile",
                            "providers",
                            "docker",
                            "devpod",
                            "type",
                            "aws",
                            "instanceType",
                            "region",
                            "env",
                            "environment",
                            "privileged",
                            "network",
                            "dind",
                            "mode",
                            "runtime",
                            "dockerHost",
                            "distro",
                        ]
                    ),
                    st.text(max_size=8),
                    st.integers(),
                ),
                children,
                max_size=5,
            ),
        ),
        max_leaves=25,
    )

    def exercise(document: Any) -> None:
        result = validate_sindri_yaml(document)
        assert isinstance(result, ValidationResult)
        assert all(
            isinstance(e, FieldError) and isinstance(e.field, str) and e.message for e in result.errors
        )
        reserved_secret_violations(document, ["sindri_x", "OK"])
        hardening_violations(document, False, [])
        declared_extensions(document)
        sizing(document)
        declared_config(document)
        declared_region(document)

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None, database=None)
    @given(st.one_of(st.text(max_size=300), yaml_like))
    def test_arbitrary_text_never_raises(text):
        result = parse_sindri_yaml(text)
        if isinstance(result, list):
            assert result and all(isinstance(e, FieldError) and e.message for e in result)
        else:
            assert isinstance(result.document, dict)
            exercise(result)

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None, database=None)
    @given(documents)
    def test_arbitrary_documents_never_raise(document):
        exercise(document)

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None, database=None)
    @given(st.dictionaries(st.text(min_size=1, max_size=8), documents, max_size=5))
    def test_overrides_round_trip_through_the_parser(document):
        text = apply_overrides(document, name="round-trip")
        result = parse_sindri_yaml(text)
        assert isinstance(result, ParsedYaml), result
        # nan never compares equal to itself; everything else must come back unchanged.
        if ".nan" not in text:
            assert result.document == {**document, "name": "round-trip"}

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        st.sampled_from(sorted(RESERVED_SECRET_EXACT) + [p + "X" for p in RESERVED_SECRET_PREFIXES]),
        st.data(),
    )
    def test_reserved_names_in_any_case(name, data):
        mixed = "".join(c.lower() if data.draw(st.booleans()) else c for c in name)
        assert reserved_secret_violations(BASE, [mixed])
        assert reserved_secret_violations(doc_with(deployment__env={mixed: "v"}), ())
