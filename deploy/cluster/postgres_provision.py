"""Create the database user of MLflow and Optuna and its databases, once, as the RDS master.

Run on your machine, after a `ray up` of cluster.yaml whose head setup stopped because that user
cannot log in yet (a new RDS instance; docs/cluster.md, "Once per AWS account"):

    python deploy/cluster/postgres_provision.py mine/cluster.yaml --admin-secret-id ARN

It reads the master credentials from the secret RDS manages for the instance (with your AWS
credentials: the head's instance role may not read that secret), then runs the head's own setup
command from the cluster file (deploy/cluster/postgres_credentials.py) on the head with
`--admin-from-stdin`, over SSH, the credentials on its stdin: never in a file, an argument or an
environment variable, on either machine. The head's Ray token does not open the master login.
Run it again after changing the application user's password in its secret (rotation), or the
user or databases in the cluster file; then `ray up` again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SETUP_SCRIPT = "postgres_credentials.py"


def head_setup_command(config: dict) -> str:
    """The cluster file's head setup command that runs postgres_credentials.py."""
    (command,) = [c for c in config.get("head_setup_commands", []) if SETUP_SCRIPT in c]
    return command


def remote_command(config: dict) -> str:
    """What runs on the head: that command, provisioning first with credentials from stdin."""
    return "bash -c " + shlex.quote(head_setup_command(config) + " --admin-from-stdin")


def region(config: dict) -> str:
    argv = shlex.split(head_setup_command(config))
    return argv[argv.index("--region") + 1]


def fetch_master(region_name: str, secret_id: str) -> str:
    """The master secret's string: JSON with username and password (RDS's own format)."""
    import boto3

    secrets = boto3.client("secretsmanager", region_name=region_name)
    return secrets.get_secret_value(SecretId=secret_id)["SecretString"]


def ray_ssh(config_path: str) -> list[str]:
    """`ssh` with the options, key, user and head address that `ray exec` would use (Ray 2.60's
    own functions; the head may be in a failed setup, as after a first `ray up`)."""
    import yaml
    from ray.autoscaler._private.command_runner import SSHOptions
    from ray.autoscaler._private.commands import _bootstrap_config, _get_running_head_node
    from ray.autoscaler._private.providers import _get_node_provider

    config = _bootstrap_config(yaml.safe_load(Path(config_path).read_text()))
    provider = _get_node_provider(config["provider"], config["cluster_name"])
    head = _get_running_head_node(config, config_path, None, _allow_uninitialized_state=True)
    internal = config["provider"].get("use_internal_ips", False)
    address = provider.internal_ip(head) if internal else provider.external_ip(head)
    options = SSHOptions(config["auth"].get("ssh_private_key")).to_ssh_options_list(timeout=60)
    return ["ssh", *options, f"{config['auth']['ssh_user']}@{address}"]


def provision(ssh: list[str], remote: str, master: str,
              run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> int:
    """Run `remote` through `ssh` with the master credentials on stdin; its exit status."""
    try:
        credentials = json.loads(master)
        credentials = {"username": credentials["username"], "password": credentials["password"]}
    except (ValueError, KeyError, TypeError):
        raise SystemExit("the master secret must hold JSON with username and password "
                         "(the secret RDS manages for its master user)") from None
    return run([*ssh, remote], input=json.dumps(credentials), text=True).returncode


def main(argv: list[str] | None = None, *, secret: Callable[[str, str], str] = fetch_master,
         ssh: Callable[[str], list[str]] = ray_ssh) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cluster_file", help="your filled-in cluster.yaml (mine/cluster.yaml)")
    parser.add_argument("--admin-secret-id", required=True,
                        help="the RDS master secret: `aws rds describe-db-instances "
                             "--db-instance-identifier resnet-search --query "
                             "'DBInstances[0].MasterUserSecret.SecretArn'`")
    args = parser.parse_args(argv)
    import yaml

    config = yaml.safe_load(Path(args.cluster_file).read_text())
    remote = remote_command(config)
    master = secret(region(config), args.admin_secret_id)
    return provision(ssh(args.cluster_file), remote, master)


if __name__ == "__main__":
    sys.exit(main())
