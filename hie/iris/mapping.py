"""What each IRIS production class and setting becomes in HIE.

Two tables, both plain data so the migration report can show them:

- ``CLASS_MAP``: IRIS ``ClassName`` -> HIE built-in host name;
- ``SETTING_MAP``: IRIS ``<Setting Name=...>`` -> candidate HIE item setting names. A setting is
  written under the first candidate the resolved host's ``Settings`` model has, so a host whose
  model does not know a setting gets it listed as unmapped instead of failing validation.

A user mapping file (YAML) extends both, and names the Python functions that stand in for
helper class methods (``hie.iris.helper_classes``)::

    classes:
      Demo.HL7.MyTCPService: mypkg.hosts:MyTCPService   # or a built-in name: HL7TCPService
    settings:
      MyCustomSetting: my_setting                        # for every class
      Demo.HL7.MyTCPService: {Threshold: threshold}      # for one IRIS class only
    functions:
      Demo.Util.Helper.Now: mypkg.helpers:now            # one class method -> module:function
      Demo.Util.Codes: mypkg.codes                       # every method -> same-named function

A production finds ``hie-mapping.yaml`` beside its own file (``hie.iris.helper_classes``).
"""

from __future__ import annotations

import re

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from hie.config.bounded_yaml import BoundedLoader
from hie.errors import ConfigError
from hie.iris.classfile import tag_name

if TYPE_CHECKING:
    from lxml import etree

    from hie.hosts.base import Host

#: IRIS class -> HIE built-in host name (hie.hosts.registry.BUILTIN_HOSTS).
CLASS_MAP: dict[str, str] = {
    "EnsLib.HL7.Service.TCPService": "HL7TCPService",
    "EnsLib.HL7.Service.FileService": "HL7FileService",
    "EnsLib.HL7.Service.HTTPService": "HL7HTTPService",
    "EnsLib.HL7.MsgRouter.RoutingEngine": "HL7RoutingEngine",
    "EnsLib.MsgRouter.RoutingEngine": "RoutingEngine",
    "EnsLib.HL7.Operation.TCPOperation": "HL7TCPOperation",
    "EnsLib.HL7.Operation.FileOperation": "HL7FileOperation",
    "EnsLib.HL7.Operation.HTTPOperation": "HL7HTTPOperation",
    "EnsLib.HTTP.GenericService": "HTTPService",
    "EnsLib.HTTP.GenericOperation": "HTTPOperation",
    "EnsLib.REST.GenericOperation": "HTTPOperation",
    "EnsLib.File.PassthroughService": "FileService",
    "EnsLib.File.PassthroughOperation": "FileOperation",
    "EnsLib.EMail.AlertOperation": "EmailAlertOperation",
    # Old Ensemble productions name the alert sink's class Ens.Alert itself.
    "Ens.Alert": "EmailAlertOperation",
}

#: IRIS classes (by prefix) that have no HIE counterpart, and why.
UNSUPPORTED_CLASSES: dict[str, str] = {
    "Ens.Activity.Operation.": (
        "activity monitoring (Ens.Activity) is not part of HIE; use `hie status --json` and the "
        "message store for volumes, or remove the item"
    ),
    "Ens.Enterprise.": "enterprise message bank / monitor is not part of HIE",
}


def _text(value: str) -> Any:
    return value


def iris_filename(value: str) -> str:
    """An IRIS ``Filename`` pattern in HIE's form.

    ``%f``/``%F`` (the source file name; a message from MLLP has none) become ``{control_id}``,
    ``%Q``/``%q`` (timestamps) ``{timestamp}``; IRIS's uniqueness suffixes (``%!+(..)``,
    ``%+(..)``, ``%#``) are dropped, and ``_{message_id}`` is added when nothing else in the name
    is unique, so two messages never overwrite one file. Date codes (``%Y%m%d%H%M%S``) stay:
    HIE fills them from the clock when it writes.
    """
    out = re.sub(r"%!?\+\([^)]*\)|%#", "", value)
    out = out.replace("{", "{{").replace("}", "}}")
    out = re.sub(r"%[fF]", "{control_id}", out)
    out = re.sub(r"%[Qq](\([^)]*\))?", "{timestamp}", out)
    if not any(t in out for t in ("{control_id}", "{timestamp}", "{message_id}")):
        stem, dot, ext = out.rpartition(".")
        out = f"{stem}_{{message_id}}.{ext}" if dot and stem else f"{out}_{{message_id}}"
    return out


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


_ACK_MODES = {
    "never": "never",
    "n": "never",
    "immed": "immediate",
    "immediate": "immediate",
    "i": "immediate",
    "app": "application",
    "application": "application",
    "a": "application",
    "msh": "msh",
    "msh-determined": "msh",
    "m": "msh",
}


def _ack_mode(value: str) -> str:
    mode = _ACK_MODES.get(value.strip().lower())
    if mode is None:
        # IRIS also has "Byte" (a single ACK byte); HIE answers with HL7 ACKs only.
        raise ValueError(f"AckMode {value!r} has no HIE equivalent (never, immediate, app, msh)")
    return mode


def _charset(value: str) -> str:
    # "!latin1" forces the charset over MSH-18 in IRIS; HIE's `charset` already does that.
    name = value.strip().lstrip("!").lstrip("@")
    if name.lower() in {"default", "native", "binary", "rawbytes"}:
        raise ValueError(f"charset {value!r} is IRIS-specific; HIE uses MSH-18 or utf-8")
    return name


@dataclass(frozen=True)
class SettingRule:
    """One IRIS setting: HIE names to try, in order, and how to turn the text into a value."""

    fields: tuple[str, ...]
    convert: Callable[[str], Any] = _text


#: IRIS setting name -> HIE item setting. ``TargetConfigNames`` and ``IPAddress`` are handled
#: by the loader (item targets; the `!` client mode of TCP services).
SETTING_MAP: dict[str, SettingRule] = {
    "Port": SettingRule(("port",)),
    "IPAddress": SettingRule(("host",)),
    "AllowedIPAddresses": SettingRule(("allowed_clients",), _csv),
    "HTTPServer": SettingRule(("host",)),
    "HTTPPort": SettingRule(("port",)),
    # IRIS URL is the path on HTTPServer (HTTP operations), or a whole URL elsewhere.
    "URL": SettingRule(("path", "url")),
    "AckMode": SettingRule(("ack_mode",), _ack_mode),
    "UseAckCommitCodes": SettingRule(("use_commit_codes",)),
    "BusinessRuleName": SettingRule(("rules",)),
    "ReplyCodeActions": SettingRule(("reply_code_actions",)),
    "RetryInterval": SettingRule(("retry_interval",)),
    "FailureTimeout": SettingRule(("failure_timeout",)),
    "FilePath": SettingRule(("file_path",)),
    "FileSpec": SettingRule(("file_spec",)),
    "ArchivePath": SettingRule(("archive_path",)),
    "Filename": SettingRule(("filename",), iris_filename),
    "CallInterval": SettingRule(("poll_interval",)),
    "MessageSchemaCategory": SettingRule(("schema_category",)),
    # Not an IRIS setting (IRIS keeps lookup tables in its database): exported table files a
    # router reads, which an IRIS production may name so HIE finds them.
    "LookupTables": SettingRule(("lookup_tables",), _csv),
    "Validation": SettingRule(("validation",)),
    "Framing": SettingRule(("framing",)),
    "DefCharEncoding": SettingRule(("charset",), _charset),
    "Charset": SettingRule(("charset",), _charset),
    "StayConnected": SettingRule(("stay_connected",)),
    "ConnectTimeout": SettingRule(("connect_timeout",)),
    "ResponseTimeout": SettingRule(("timeout", "response_timeout")),
    "ReadTimeout": SettingRule(("read_timeout",)),
    "BadMessageHandler": SettingRule(("bad_message_handler",)),
    "SMTPServer": SettingRule(("smtp_server",)),
    "SMTPPort": SettingRule(("smtp_port",)),
    "Recipient": SettingRule(("recipients",), _csv),
    "Cc": SettingRule(("cc",), _csv),
    "From": SettingRule(("sender", "from_address")),
}

#: Settings HIE deliberately does without, and what to do instead.
UNSUPPORTED_SETTINGS: dict[str, str] = {
    "AlertOnError": "HIE has no alert routing yet; failures are in the store and `hie status`",
    "AlertGracePeriod": "HIE has no alert routing yet",
    "AlertRetryGracePeriod": "HIE has no alert routing yet",
    "AlertOnBadMessage": "HIE has no alert routing yet",
    "InactivityTimeout": "HIE has no inactivity alerts; watch `hie status` (last message time)",
    "ArchiveIO": "every message is kept in the HIE message store; `hie trace` shows each hop",
    "SearchTableClass": "the HIE store indexes message type and fields itself (`hie messages`)",
    "SSLConfig": "HIE takes TLS files (tls_cert / tls_key / tls_ca), not an IRIS SSL config name",
    "Credentials": "HIE takes credentials from settings/env, never from production files",
    "AckTargetConfigNames": "forwarding received ACKs to another item is not supported",
    "IgnoreInboundAck": "HIE ignores ACKs arriving on an inbound connection",
    "BatchHandling": "HL7 batches are split into single messages by the gateway",
    "LocalFacilityApplication": "HIE builds ACKs from the inbound MSH (sender/receiver swapped)",
    "Separators": "HIE keeps the message's own separators (MSH-1/MSH-2)",
    "WorkPath": "the HIE file adapter renames files in place while working on them",
    "FileAccessTimeout": "the HIE file adapter waits for a file's size to settle instead",
    "AppendTimestamp": "put {timestamp} in `filename` instead",
    "Overwrite": "HIE writes one file per message (see `filename`)",
    "OpenTimeout": "HIE opens files without a timeout",
    "AckType": "HIE routing engines do not build ACKs; the inbound service does (ack_mode)",
    "NackCode": "HIE routing engines do not build ACKs; the inbound service does (ack_mode)",
    "AutoBatchParentSegs": "HL7 batch output is not supported; one message per file",
}


@dataclass
class Mapping:
    """Extra class and setting mappings from a user mapping file."""

    classes: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    class_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    #: ``Class.Method`` (or a whole ``Class``, or ``..Method``) -> ``module:function``
    #: (``module`` for a class).
    functions: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def setting_fields(self, iris_class: str, name: str) -> tuple[str, ...] | None:
        """HIE names for IRIS setting ``name`` on ``iris_class`` from this mapping, if any."""
        per_class = self.class_settings.get(iris_class, {})
        if name in per_class:
            return (per_class[name],)
        if name in self.settings:
            return (self.settings[name],)
        return None


def _str_dict(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where} must be a mapping of names to names")
    return dict(value)


def load_mapping(path: str | Path | None) -> Mapping:
    """Read a mapping file (see the module docstring); an empty ``Mapping`` for ``None``."""
    if path is None:
        return Mapping()
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=BoundedLoader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read mapping file {path}: {exc}") from exc
    if not isinstance(data, dict) or set(data) - {"classes", "settings", "functions"}:
        raise ConfigError(
            f"mapping file {path}: only 'classes', 'settings' and 'functions' are allowed"
        )
    mapping = Mapping(
        classes=_str_dict(data.get("classes") or {}, f"{path}: classes"),
        functions=_str_dict(data.get("functions") or {}, f"{path}: functions"),
        source=str(path),
    )
    for key, target in mapping.functions.items():
        if not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?", target):
            raise ConfigError(
                f"mapping file {path}: functions.{key}: {target!r} is not module:function "
                "(or a module, for a whole class)"
            )
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"mapping file {path}: settings must be a mapping")
    for key, value in settings.items():
        if isinstance(value, dict):
            mapping.class_settings[str(key)] = _str_dict(value, f"{path}: settings.{key}")
        elif isinstance(value, str):
            mapping.settings[str(key)] = value
        else:
            raise ConfigError(f"mapping file {path}: settings.{key} must be a name or a mapping")
    return mapping


def hie_class_for(iris_class: str, mapping: Mapping) -> tuple[str | None, str | None]:
    """The HIE class name for ``iris_class`` and, when there is none, why and what to do."""
    if iris_class in mapping.classes:
        return mapping.classes[iris_class], None
    if iris_class in CLASS_MAP:
        return CLASS_MAP[iris_class], None
    for prefix, reason in UNSUPPORTED_CLASSES.items():
        if iris_class.startswith(prefix):
            return None, f"{iris_class}: {reason}"
    hint = (
        f"write a Python host class (subclass a HIE host) and name it in a mapping file: "
        f"`classes: {{{iris_class}: mypkg.hosts:MyHost}}`, then pass --mapping FILE"
    )
    if iris_class.startswith(("EnsLib.", "Ens.", "HS.")):
        return None, f"IRIS class {iris_class} has no HIE equivalent in this version; {hint}"
    return None, f"custom class {iris_class} (ObjectScript code) cannot be converted; {hint}"


@dataclass
class UnmappedSetting:
    """An IRIS setting (or item attribute) that HIE does not take, and why."""

    name: str
    value: str
    reason: str
    line: int | None = None
    target: str = "Host"


@dataclass
class ItemReport:
    """How one IRIS item maps: its HIE class (None when it cannot run), settings and leftovers."""

    name: str
    iris_name: str
    iris_class: str
    line: int
    #: The HIE host class the item runs as; None when it cannot run (see ``reason``).
    hie_class: str | None = None
    #: The HIE class the IRIS class maps to, even when the item cannot run as it.
    maps_to: str | None = None
    kind: str | None = None
    reason: str | None = None
    #: The IRIS rule class (BusinessRuleName) of a routing engine.
    rule: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    unmapped_settings: list[UnmappedSetting] = field(default_factory=list)
    iris_settings: dict[str, str] = field(default_factory=dict)
    iris_targets: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Setting:
    name: str
    value: str
    line: int | None
    target: str


def _settings_of(element: etree._Element, offset: int) -> list[_Setting]:
    out = []
    for child in element:
        if tag_name(child) != "Setting":
            continue
        line = child.sourceline + offset if child.sourceline else None
        name = (child.get("Name") or "").strip()
        out.append(_Setting(name, child.text or "", line, child.get("Target") or "Host"))
    return out


def _attribute_notes(element: etree._Element, report: ItemReport) -> None:
    if (element.get("Foreground") or "").lower() in {"1", "true"}:
        report.notes.append("Foreground: run `hie worker FILE ITEM` in a terminal instead")
    if (element.get("LogTraceEvents") or "").lower() in {"1", "true"}:
        report.notes.append("LogTraceEvents: use --log-level DEBUG")
    schedule = (element.get("Schedule") or "").strip()
    if schedule:
        report.unmapped_settings.append(
            UnmappedSetting(
                "Schedule",
                schedule,
                "IRIS schedules (start/stop at set times) are not supported; HIE items run "
                "while enabled: run `hie enable` / `hie disable` from cron instead",
                report.line,
                "Item",
            )
        )


def _iris_names_for(key: str) -> str:
    names = [name for name, rule in SETTING_MAP.items() if key in rule.fields]
    return f" (IRIS {' / '.join(names)})" if names else ""


def _fit(
    host_class: type[Host], report: ItemReport, mapped: dict[str, Any], origin: dict[str, _Setting]
) -> None:
    """Validate ``mapped`` into the host's Settings; a refused value moves to unmapped."""
    name = report.maps_to
    for _ in range(len(mapped) + 1):
        try:
            model = host_class.Settings.model_validate(mapped)
        except ValidationError as exc:
            missing: list[str] = []
            refused = False
            for err in exc.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                if key in mapped:
                    mapped.pop(key)
                    src = origin.pop(key)
                    report.unmapped_settings.append(
                        UnmappedSetting(
                            src.name,
                            src.value,
                            f"{name} refuses it as {key!r}: {err['msg']}",
                            src.line,
                            src.target,
                        )
                    )
                    refused = True
                elif err["type"] == "missing":
                    missing.append(f"{key!r}{_iris_names_for(key)}")
            if refused:
                continue
            report.hie_class = None
            report.reason = (
                f"{report.iris_class} maps to {name}, which needs {', '.join(missing)}; "
                "the IRIS item does not set it"
                if missing
                else f"{name} refuses the item's settings: {exc}"
            )
            return
        dumped = model.model_dump(mode="json")
        report.settings = {key: dumped.get(key, value) for key, value in mapped.items()}
        return


def _resolve(report: ItemReport, hie_class: str, mapping: Mapping) -> type[Host] | None:
    from hie.hosts.registry import resolve_host_class

    try:
        return resolve_host_class(hie_class)
    except ConfigError as exc:
        if report.iris_class in mapping.classes:
            report.reason = (
                f"the mapping file names {hie_class!r} for {report.iris_class}, which cannot be "
                f"loaded: {exc}"
            )
        else:
            report.reason = (
                f"{report.iris_class} maps to HIE class {hie_class}, which is not available in "
                "this version of HIE"
            )
        return None


def map_item_settings(
    element: etree._Element, name: str, line: int, offset: int, mapping: Mapping
) -> ItemReport:
    """Map one ``<Item>``: its class, its settings (checked against the host's Settings model)."""
    iris_class = (element.get("ClassName") or "").strip()
    report = ItemReport(name, (element.get("Name") or "").strip(), iris_class, line)
    settings = _settings_of(element, offset)
    for s in settings:
        report.iris_settings[s.name] = s.value
        if s.name == "TargetConfigNames":
            report.iris_targets = _csv(s.value)
        elif s.name == "BusinessRuleName":
            report.rule = s.value.strip() or None
    _attribute_notes(element, report)
    report.maps_to, report.reason = hie_class_for(iris_class, mapping)
    if report.maps_to is None:
        return report
    host_class = _resolve(report, report.maps_to, mapping)
    if host_class is None:
        return report
    report.kind = host_class.kind
    report.hie_class = report.maps_to
    fields = host_class.Settings.model_fields
    mapped: dict[str, Any] = {}
    origin: dict[str, _Setting] = {}
    for s in settings:
        if s.name == "TargetConfigNames":
            continue
        reason, key, value = _map_one(s, iris_class, report, mapping, fields)
        if reason is not None:
            report.unmapped_settings.append(
                UnmappedSetting(s.name, s.value, reason, s.line, s.target)
            )
        elif key is not None:
            if key in mapped:
                reason = f"{key!r} is already set from IRIS {origin[key].name}"
                report.unmapped_settings.append(
                    UnmappedSetting(s.name, s.value, reason, s.line, s.target)
                )
                continue
            mapped[key], origin[key] = value, s
    _fit(host_class, report, mapped, origin)
    return report


def _map_one(
    s: _Setting, iris_class: str, report: ItemReport, mapping: Mapping, fields: dict[str, Any]
) -> tuple[str | None, str | None, Any]:
    """(reason it is unmapped, or None; HIE key; value). Neither: skipped with a note."""
    user_fields = mapping.setting_fields(iris_class, s.name)
    rule = SETTING_MAP.get(s.name)
    if user_fields is None and rule is None:
        return UNSUPPORTED_SETTINGS.get(s.name, "no HIE equivalent"), None, None
    candidates = user_fields or (rule.fields if rule else ())
    if not s.value.strip():
        # IRIS writes every setting the portal showed, empty meaning "the default".
        report.notes.append(f"{s.name} is empty in IRIS: the HIE default applies")
        return None, None, None
    if s.name == "IPAddress" and s.value.strip().startswith("!") and report.kind == "service":
        return (
            "IPAddress '!host' makes an IRIS TCP service connect out to its peer (client "
            "mode); HIE services only listen",
            None,
            None,
        )
    key = next((f for f in candidates if f in fields), None)
    if key is None:
        return f"{report.maps_to} has no {candidates[0]!r} setting in this version", None, None
    convert = rule.convert if rule is not None and user_fields is None else _text
    try:
        return None, key, convert(s.value.strip())
    except ValueError as exc:
        return str(exc), None, None
