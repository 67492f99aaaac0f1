"""A real SSH server for the ssh/sftp step tests: asyncssh on 127.0.0.1 with a generated host key.

It accepts one user by password or by public key, runs exec requests with ``/bin/sh -c <command>`` in
its home directory (recording each command exactly as received), and serves SFTP chrooted to that
directory. Test modules put this directory on ``sys.path`` to import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

USER = "deploy"
PASSWORD = "correct horse battery staple"
KEY_PASSPHRASE = "open sesame"
"""What ``encrypted_client_key`` is encrypted with."""


@dataclass
class Sshd:
    """A running server: where it listens, its keys as the step's secrets want them, what it ran.

    ``client_key``, ``encrypted_client_key`` and ``openssh_encrypted_client_key`` are the same
    authorised key; the second is encrypted with :data:`KEY_PASSPHRASE` in PKCS#8 PEM, the third in
    the OpenSSH format (``ssh-keygen``'s default, bcrypt-pbkdf).
    """

    port: int
    home: Path
    known_hosts: str
    client_key: str
    encrypted_client_key: str
    openssh_encrypted_client_key: str
    wrong_known_hosts: str
    commands: list[str] = field(default_factory=list)


class _Server(asyncssh.SSHServer):
    def __init__(self, authorized: asyncssh.SSHAuthorizedKeys) -> None:
        self._authorized = authorized

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USER and password == PASSWORD

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == USER and self._authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None


@asynccontextmanager
async def running_sshd(home: Path) -> AsyncIterator[Sshd]:
    """Start the server; yield its description; stop it."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    commands: list[str] = []

    async def run_command(process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        commands.append(command)
        local = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=home,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await local.communicate()
        process.stdout.write(stdout)
        process.stderr.write(stderr)
        process.exit(local.returncode if local.returncode is not None else 255)

    server = await asyncssh.create_server(
        lambda: _Server(authorized),
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=run_command,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(home).encode()),
        encoding=None,
        allow_scp=False,
    )
    port = server.sockets[0].getsockname()[1]

    def known(key: asyncssh.SSHKey) -> str:
        return f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n"

    try:
        yield Sshd(
            port=port,
            home=home,
            known_hosts=known(host_key),
            client_key=client_key.export_private_key().decode(),
            encrypted_client_key=client_key.export_private_key("pkcs8-pem", passphrase=KEY_PASSPHRASE).decode(),
            openssh_encrypted_client_key=client_key.export_private_key("openssh", passphrase=KEY_PASSPHRASE).decode(),
            wrong_known_hosts=known(other_key),
            commands=commands,
        )
    finally:
        server.close()
        await server.wait_closed()
