"""A WS-Management responder for the winrm step tests: HTTPS on 127.0.0.1, the real WinRS SOAP protocol.

What it covers (what pywinrm sends for ``run_cmd``/``run_ps`` and what the executor's winrm steps use):

- **Transport**: HTTPS with a certificate signed by a CA the test generates (``ca_pem``, given to the
  step as ``ca_secret``); HTTP/1.1 keep-alive; ``POST /wsman`` with ``application/soap+xml``.
- **Authentication**: ``Basic`` and ``NTLM`` (a real NTLMv2 challenge/response, verified with pyspnego's
  NTLM acceptor against the test's user, on the connection it was negotiated on, as WinRM does).
  Wrong credentials get 401. Kerberos and CredSSP are not covered.
- **WinRS shell operations**: ``Create`` (answers a ``ResourceCreated`` with the ``ShellId`` selector),
  ``Command`` (``CommandId``), ``Receive`` (base64 ``stdout``/``stderr`` streams over one or more
  receives, ``CommandState`` Running then Done with the ``ExitCode``; a command that "sleeps" first
  answers with the WS-Man ``TimedOut`` fault, code 2150858793, as a real server does when nothing
  arrives within the ``OperationTimeout``), ``Signal`` (terminate) and ``Delete``; ``RelatesTo``
  echoes the request's ``MessageID``. Other actions get a SOAP fault.
- **Commands**: it does not run PowerShell. ``powershell[.exe] ... -EncodedCommand <base64 UTF-16LE>``
  is decoded (every script is recorded) and interpreted by :class:`FakePowerShell`, which understands
  only what the tests send: variables assigned from base64 text or bytes (the executor's templates and
  ``winrm.copy`` chunks), ``[System.IO.File]::Open`` + ``Write`` on a virtual file system,
  ``Get-FileHash ... SHA256``, ``Write-Output``, ``Write-Error`` (as PowerShell's CLIXML on stderr),
  ``Start-Sleep -Seconds n`` and ``exit n``. ``cmd`` commands: ``echo``; anything else is "not
  recognized".

Test modules put this directory on ``sys.path`` to import it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import re
import ssl
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

USER = "winadmin"
PASSWORD = "P@ssw0rd-for-tests"
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
TIMED_OUT_CODE = 2150858793
CLIXML_NS = "http://schemas.microsoft.com/powershell/2004/04"


# --- certificates -----------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> tuple[str, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (CA PEM, cert file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("automation test CA"))
        .issuer_name(_name("automation test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_cert.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


# --- a tiny PowerShell, enough for the tests ---------------------------------------------------------


@dataclass
class Result:
    """What a command prints and returns; ``timeouts`` Receive calls answer TimedOut first."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    timeouts: int = 0


def clixml_error(message: str) -> bytes:
    """``message`` as PowerShell writes an error record to stderr under ``-EncodedCommand``."""
    text = escape(message).replace("\n", "_x000D__x000A_")
    return (
        f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="{CLIXML_NS}"><S S="Error">{text}_x000D__x000A_</S></Objs>'
    ).encode()


_B64_TEXT = re.compile(
    r"^\$\{?(\w+)\}? = \[System\.Text\.Encoding\]::UTF8\.GetString\("
    r"\[System\.Convert\]::FromBase64String\('([A-Za-z0-9+/=]*)'\)\)$"
)
_B64_BYTES = re.compile(r"^\$(\w+) = \[System\.Convert\]::FromBase64String\('([A-Za-z0-9+/=]*)'\)$")
_OPEN = re.compile(r"^\$stream = \[System\.IO\.File\]::Open\(\$(\w+), \[System\.IO\.FileMode\]::(Create|Append), .*\)$")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class FakePowerShell:
    """Interprets the few statements the tests send (see the module doc); a virtual file system."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def _value(self, expression: str, variables: dict[str, Any]) -> str:
        expression = expression.strip()
        if expression.startswith("'") and expression.endswith("'"):
            return expression[1:-1].replace("''", "'")
        if expression.startswith('"') and expression.endswith('"'):
            return _VARIABLE.sub(lambda m: str(variables.get(m.group(1) or m.group(2), "")), expression[1:-1])
        whole = _VARIABLE.fullmatch(expression)
        if whole is not None:
            return str(variables.get(whole.group(1) or whole.group(2), ""))
        return expression

    def run(self, script: str) -> Result:
        variables: dict[str, Any] = {}
        out = bytearray()
        result = Result()
        stream: tuple[str, str] | None = None
        for raw in script.splitlines():
            line = raw.strip()
            if not line or line == "$ErrorActionPreference = 'Stop'":
                continue
            if match := _B64_TEXT.match(line):
                variables[match.group(1)] = base64.b64decode(match.group(2)).decode("utf-8")
            elif match := _B64_BYTES.match(line):
                variables[match.group(1)] = base64.b64decode(match.group(2))
            elif match := _OPEN.match(line):
                stream = (variables[match.group(1)], match.group(2))
            elif line.startswith("try { $stream.Write($bytes"):
                assert stream is not None
                path, mode = stream
                self.files[path] = (self.files.get(path, b"") if mode == "Append" else b"") + variables["bytes"]
            elif line.startswith("(Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash"):
                path = variables["path"]
                if path not in self.files:
                    return Result(bytes(out), clixml_error(f"Cannot find path '{path}'."), 1)
                out += hashlib.sha256(self.files[path]).hexdigest().upper().encode() + b"\r\n"
            elif line.startswith("Write-Output "):
                out += self._value(line.removeprefix("Write-Output "), variables).encode("utf-8") + b"\r\n"
            elif line.startswith("Write-Error "):
                result.stderr += clixml_error(self._value(line.removeprefix("Write-Error "), variables))
            elif match := re.fullmatch(r"Start-Sleep -Seconds (\d+)", line):
                result.timeouts += int(match.group(1))
            elif match := re.fullmatch(r"exit (\d+)", line):
                result.exit_code = int(match.group(1))
                break
            else:
                message = f"The term '{line.split()[0]}' is not recognized as a cmdlet, function or operable program."
                return Result(bytes(out), result.stderr + clixml_error(message), 1)
        result.stdout = bytes(out)
        return result


def run_command_line(command_line: str, powershell: FakePowerShell, scripts: list[str]) -> Result:
    """A WinRS command line: ``powershell ... -EncodedCommand x`` or a few ``cmd`` built-ins."""
    words = command_line.split()
    if words and words[0].lower() in {"powershell", "powershell.exe"}:
        lowered = [w.lower() for w in words]
        if "-encodedcommand" not in lowered:
            return Result(stderr=b"only -EncodedCommand is supported here", exit_code=1)
        encoded = words[lowered.index("-encodedcommand") + 1]
        script = base64.b64decode(encoded).decode("utf-16-le")
        scripts.append(script)
        return powershell.run(script)
    if words and words[0].lower() == "echo":
        return Result(stdout=command_line[5:].encode() + b"\r\n")
    name = words[0] if words else ""
    message = f"'{name}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
    return Result(stderr=message.encode(), exit_code=1)


# --- the SOAP side -----------------------------------------------------------------------------------


@dataclass
class _Command:
    result: Result
    sent_stdout: int = 0
    receives: int = 0


@dataclass
class WsmanState:
    """Everything the responder saw and holds; guarded by ``lock``."""

    ntlm: bool
    basic: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    shells: dict[str, dict[str, _Command]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    command_lines: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    authenticated: list[str] = field(default_factory=list)
    codepages: list[str] = field(default_factory=list)
    corrupt_files: bool = False


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}"'
        f' xmlns:x="{TRANSFER}">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault(relates_to: str, subcode: str, reason: str, code: int) -> bytes:
    body = (
        f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(reason)}</s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}"'
        f' Machine="127.0.0.1"><f:Message>{escape(reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>'
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def _streams(command_id: str, stdout: bytes, stderr: bytes, done: bool, exit_code: int) -> str:
    parts = []
    for name, data in (("stdout", stdout), ("stderr", stderr)):
        if data:
            encoded = base64.b64encode(data).decode()
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{command_id}">{encoded}</rsp:Stream>')
        if done:
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{command_id}" End="true"></rsp:Stream>')
    state = "Done" if done else "Running"
    exit_xml = f"<rsp:ExitCode>{exit_code}</rsp:ExitCode>" if done else ""
    state_uri = f"{SHELL_URI}/CommandState/{state}"
    parts.append(f'<rsp:CommandState CommandId="{command_id}" State="{state_uri}">{exit_xml}</rsp:CommandState>')
    return f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"


def handle_soap(state: WsmanState, request: bytes) -> tuple[int, bytes]:
    """One WS-Man request: (HTTP status, response envelope)."""
    root = ET.fromstring(request)
    action = root.findtext("s:Header/a:Action", "", NS)
    message_id = root.findtext("s:Header/a:MessageID", "", NS)
    selector = root.find("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", NS)
    shell_id = selector.text if selector is not None and selector.text else ""
    body = root.find("s:Body", NS)
    assert body is not None
    with state.lock:
        state.actions.append(action.rsplit("/", 1)[-1])
        if action == f"{TRANSFER}/Create":
            shell_id = str(uuid.uuid4()).upper()
            state.shells[shell_id] = {}
            for option in root.iterfind("s:Header/w:OptionSet/w:Option", NS):
                if option.get("Name") == "WINRS_CODEPAGE":
                    state.codepages.append(option.text or "")
            created = (
                f"<x:ResourceCreated><a:Address>https://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"
                f"<w:ResourceURI>{SHELL_URI}/cmd</w:ResourceURI><w:SelectorSet>"
                f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId></rsp:Shell>"
            )
            return 200, _envelope(f"{TRANSFER}/CreateResponse", message_id, created)
        if shell_id not in state.shells:
            return 500, _fault(message_id, "w:InvalidSelectors", "The shell was not found.", 2150858843)
        commands = state.shells[shell_id]
        if action == f"{SHELL_URI}/Command":
            line = body.findtext("rsp:CommandLine/rsp:Command", "", NS).strip()
            arguments = body.findtext("rsp:CommandLine/rsp:Arguments", "", NS)
            command_line = f"{line} {arguments}".strip()
            state.command_lines.append(command_line)
            result = run_command_line(command_line, FakePowerShell(state.files), state.scripts)
            if state.corrupt_files:
                state.files = {path: data + b"!" for path, data in state.files.items()}
            command_id = str(uuid.uuid4()).upper()
            commands[command_id] = _Command(result)
            response = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
            return 200, _envelope(f"{SHELL_URI}/CommandResponse", message_id, response)
        if action == f"{SHELL_URI}/Receive":
            desired = body.find("rsp:Receive/rsp:DesiredStream", NS)
            command_id = desired.get("CommandId", "") if desired is not None else ""
            command = commands[command_id]
            if command.result.timeouts > 0:
                command.result.timeouts -= 1
                reason = "The WS-Management service cannot complete the operation within the OperationTimeout."
                return 500, _fault(message_id, "w:TimedOut", reason, TIMED_OUT_CODE)
            command.receives += 1
            stdout = command.result.stdout
            if command.receives == 1 and len(stdout) > 1:  # first half now, the rest with Done
                half = len(stdout) // 2
                command.sent_stdout = half
                receive = _streams(command_id, stdout[:half], b"", False, 0)
            else:
                rest = stdout[command.sent_stdout :]
                receive = _streams(command_id, rest, command.result.stderr, True, command.result.exit_code)
            return 200, _envelope(f"{SHELL_URI}/ReceiveResponse", message_id, receive)
        if action == f"{SHELL_URI}/Signal":
            signal = body.find("rsp:Signal", NS)
            code = body.findtext("rsp:Signal/rsp:Code", "", NS)
            state.signals.append(code.rsplit("/", 1)[-1])
            commands.pop(signal.get("CommandId", "") if signal is not None else "", None)
            return 200, _envelope(f"{SHELL_URI}/SignalResponse", message_id, "<rsp:SignalResponse/>")
        if action == f"{TRANSFER}/Delete":
            del state.shells[shell_id]
            return 200, _envelope(f"{TRANSFER}/DeleteResponse", message_id, "")
        return 500, _fault(message_id, "a:ActionNotSupported", f"The action {action} is not supported.", 2150858752)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one write (flushed after each request)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.ntlm: Any = None
        self.authenticated = False

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self, ntlm_token: str | None = None) -> None:
        state = self.server.state
        offers = []
        if ntlm_token is not None:
            offers.append(f"NTLM {ntlm_token}")
        else:
            if state.ntlm:
                offers.append("NTLM")
            if state.basic:
                offers.append('Basic realm="WSMAN"')
        self.send_response(401)
        for offer in offers:
            self.send_header("WWW-Authenticate", offer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authorize(self) -> bool:
        state = self.server.state
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic" and state.basic:
            user, _, password = base64.b64decode(token).decode().partition(":")
            if user == USER and password == PASSWORD:
                state.authenticated.append("basic")
                return True
            self._challenge()
            return False
        if scheme.lower() == "ntlm" and state.ntlm:
            try:
                if self.ntlm is None:
                    self.ntlm = spnego.server(protocol="ntlm")
                answer = self.ntlm.step(base64.b64decode(token))
            except spnego.exceptions.SpnegoError:
                self.ntlm = None
                self._challenge()
                return False
            if not self.ntlm.complete:
                self._challenge(base64.b64encode(answer or b"").decode())
                return False
            self.ntlm = None
            self.authenticated = True  # NTLM authenticates the connection
            state.authenticated.append("ntlm")
            return True
        if self.authenticated:
            return True
        self._challenge()
        return False

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/wsman":
            self._reply(404)
            return
        if not self._authorize():
            return
        status, body = handle_soap(self.server.state, request)
        self._reply(status, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: WsmanState, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)


@dataclass
class Wsman:
    """A running responder: its endpoint, the CA that signed its certificate, and what it saw."""

    endpoint: str
    ca_pem: str
    state: WsmanState


@contextlib.contextmanager
def running_wsman(directory: Path, *, ntlm: bool = True, basic: bool = True) -> Iterator[Wsman]:
    """Start the responder on 127.0.0.1 (NTLM user from ``NTLM_USER_FILE``, set here); stop it after."""
    ca_pem, cert_file, key_file = make_certificates(directory)
    users = directory / "ntlm-users"
    users.write_text(f":{USER}:{PASSWORD}\n")
    saved = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(users)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = _Server(WsmanState(ntlm=ntlm, basic=basic), context)
    thread = threading.Thread(target=server.serve_forever, name="wsman", daemon=True)
    thread.start()
    try:
        yield Wsman(f"https://127.0.0.1:{server.server_address[1]}/wsman", ca_pem, server.state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        if saved is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = saved


def temporary_ca_file(pem: str) -> str:
    """The CA as a file, for pywinrm used directly (the caller removes it)."""
    handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        handle.write(pem)
    return handle.name
