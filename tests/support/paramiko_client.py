"""A scripted paramiko client (what Fabric and Ansible's paramiko connection use) through the
gateway: connects with the user's key and Portcullis certificate, pins the gateway's host key,
runs one command, uploads one file over sftp, and prints what was agreed and what came back as
JSON for the test to check.

usage: paramiko_client.py PORT USER KEY CERT HOST_KEY COMMAND UPLOAD_FROM UPLOAD_TO
"""

import base64
import json
import logging
import sys

import paramiko


class Agreed(logging.Handler):
    """paramiko names the key exchange it agreed on only in its debug log ("Kex: NAME")."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.kex = None

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Kex: "):
            self.kex = message[len("Kex: "):]


def main() -> int:
    port, user, key_path, cert_path, host_key, command, upload_from, upload_to = sys.argv[1:9]
    agreed = Agreed()
    log = logging.getLogger("paramiko.transport")
    log.setLevel(logging.DEBUG)
    log.addHandler(agreed)

    key_type, key_b64 = host_key.split()[:2]
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        f"[127.0.0.1]:{port}", key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())

    key = paramiko.Ed25519Key.from_private_key_file(key_path)
    key.load_certificate(cert_path)
    client.connect(
        "127.0.0.1",
        port=int(port),
        username=user,
        pkey=key,
        look_for_keys=False,
        allow_agent=False,
        timeout=20,
        banner_timeout=20,
        auth_timeout=20,
    )
    transport = client.get_transport()

    _, stdout, stderr = client.exec_command(command, timeout=20)
    out = stdout.read().decode("utf-8", "replace")
    err = stderr.read().decode("utf-8", "replace")
    status = stdout.channel.recv_exit_status()

    sftp = client.open_sftp()
    sftp.put(upload_from, upload_to)
    uploaded = sftp.stat(upload_to).st_size
    sftp.close()
    client.close()

    print(
        json.dumps(
            {
                "paramiko": paramiko.__version__,
                "kex": agreed.kex,
                "cipher": transport.local_cipher,
                "mac": transport.local_mac,
                "stdout": out,
                "stderr": err,
                "status": status,
                "uploaded": uploaded,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
