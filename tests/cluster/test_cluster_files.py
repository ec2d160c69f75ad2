"""cluster.yaml, cluster-local.yaml and deploy/: Ray accepts them, and each promise they make holds.

Nothing here contacts a cloud: Ray's own validation runs on the parsed files, and the parts of
Ray's AWS bootstrap that the files are meant to short-circuit run against a boto3 that fails
on any use. The shell scripts run for real, in a temporary home directory.
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CLUSTER_FILES = ["cluster.yaml", "cluster-local.yaml"]
DLAMI = "ami-YOUR_DLAMI_ID"  # pinned: looked up once, as cluster.yaml's header says
DLAMI_PARAMETER = ("/aws/service/deeplearning/ami/x86_64/"
                   "base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id")
PLACEHOLDER = re.compile(r"\b(?:sg-)?YOUR_[A-Z0-9_]+")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def header(name: str) -> str:
    """The leading comment block: what to set, how to run, what survives."""
    lines = []
    for line in (REPO / name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#"))
    return "\n".join(lines)


def documented_command(name: str, start: str) -> list[str]:
    """The command in the file's header that begins with `start`, continuation lines joined."""
    text = header(name)
    begin = text.index(start)
    command, rest = "", text[begin:].splitlines()
    for line in rest:
        command += " " + line.strip().rstrip("\\")
        if not line.rstrip().endswith("\\"):
            break
    return shlex.split(command)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def prepared(name: str) -> dict:
    """What `ray up` checks before it talks to a provider: defaults merged, then validated."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(load(name)))
    validate_config(config)
    return config


def node_types(config: dict) -> dict:
    return config["available_node_types"]


def workers(config: dict) -> dict:
    return {k: v for k, v in node_types(config).items() if k != config["head_node_type"]}


def policy(name: str) -> list[dict]:
    return json.loads((DEPLOY / "iam" / name).read_text())["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def mlflow_server(config: dict) -> list[str]:
    (command,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    argv = shlex.split(command.replace("$HOME", "/home/u"))
    return argv[argv.index("server"):]


def node_env_args(config: dict) -> list[str]:
    (command,) = [c for c in config["setup_commands"] if "node-env.sh" in c]
    argv = shlex.split(command)
    return argv[argv.index("bash") + 2:]


def setting(config: dict, name: str) -> str:
    """A NAME=VALUE that cluster's shells get (deploy/cluster/node-env.sh arguments)."""
    return dict(arg.split("=", 1) for arg in node_env_args(config))[name]


# --- Ray's own validation --------------------------------------------------------------------

@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_ray_validates_the_cluster_file(name):
    config = prepared(name)
    assert config["head_node_type"] in node_types(config)
    if config["provider"]["type"] == "aws":
        assert set(node_types(config)) == {"head", "gpu_spot"}
        assert node_types(config)["head"]["max_workers"] == 0
    else:
        provider = load(name)["provider"]
        assert provider["type"] == "local"
        assert config["max_workers"] == len(provider["worker_ips"])


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_ray_validation_rejects_a_misspelt_field(name):
    """The validation above is strict: a typo in a command list is an error, not ignored."""
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(name)
    config["head_setup_command"] = config.pop("head_setup_commands")
    with pytest.raises(ValidationError, match="head_setup_command"):
        validate_config(prepare_config(config))


@pytest.fixture
def aws_bootstrap(monkeypatch):
    """Ray's AWS bootstrap module, imported against a boto3 whose every use fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("Ray's AWS bootstrap tried to contact AWS")

    class StubError(Exception):
        pass

    stubs = {
        "boto3": {"__version__": "1.99.0", "client": refuse, "resource": refuse,
                  "Session": refuse},
        "boto3.exceptions": {"ResourceNotExistsError": StubError},
        "boto3.resources": {},
        "boto3.resources.base": {"ServiceResource": object},
        "botocore": {},
        "botocore.client": {"BaseClient": object},
        "botocore.config": {"Config": refuse},
        "botocore.exceptions": {"ClientError": StubError, "WaiterError": StubError},
    }
    for name, attributes in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    prefix = "ray.autoscaler._private.aws"
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        monkeypatch.delitem(sys.modules, name)
    yield importlib.import_module(prefix + ".config")
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[name]  # the stubbed import must not outlive this test


def test_ray_creates_no_default_role_or_security_group(aws_bootstrap):
    config = prepared("cluster.yaml")
    config["head_node"] = {}  # as bootstrap_aws sets it
    # Our profile on the head: Ray skips creating ray-autoscaler-v1 (EC2 and S3 full access).
    assert aws_bootstrap._configure_iam_role(copy.deepcopy(config))["head_node"] == {}
    # Our group on every node type: Ray skips its own (SSH open to 0.0.0.0/0).
    grouped = aws_bootstrap._configure_security_group(copy.deepcopy(config))
    assert grouped == config
    aws_bootstrap._check_ami(grouped)  # keeps our image: no fallback to Ray's CUDA 11.2 DLAMI
    assert {n["node_config"]["ImageId"] for n in node_types(grouped).values()} == {DLAMI}

    # Control: without them, the same functions go to AWS to make Ray's defaults.
    del config["available_node_types"]["head"]["node_config"]["IamInstanceProfile"]
    with pytest.raises(AssertionError, match="contact AWS"):
        aws_bootstrap._configure_iam_role(copy.deepcopy(config))
    del config["available_node_types"]["gpu_spot"]["node_config"]["SecurityGroupIds"]
    with pytest.raises(AssertionError, match="contact AWS"):
        aws_bootstrap._configure_security_group(copy.deepcopy(config))


# --- (1) the AWS cluster ---------------------------------------------------------------------

def test_every_placeholder_is_listed_at_the_top():
    listed = set(PLACEHOLDER.findall(header("cluster.yaml")))
    body = "\n".join(line for line in (REPO / "cluster.yaml").read_text().splitlines()
                     if not line.startswith("#"))
    used = set(PLACEHOLDER.findall(body))
    for path in [*DEPLOY.glob("iam/*.json"), *DEPLOY.glob("network/*.json")]:
        used |= set(PLACEHOLDER.findall(path.read_text()))
    assert used, "no placeholders found: the pattern is broken"
    assert used <= listed, f"set but not listed at the top: {sorted(used - listed)}"
    local_listed = set(PLACEHOLDER.findall(header("cluster-local.yaml")))
    local_used = set(PLACEHOLDER.findall((REPO / "cluster-local.yaml").read_text()))
    assert local_used <= local_listed


def test_every_node_boots_one_pinned_image_and_the_head_launches_no_other():
    """Issue 24, item 3: a worker launched later boots the head's image, not AWS's newest."""
    config = load("cluster.yaml")
    assert {t["node_config"]["ImageId"] for t in node_types(config).values()} == {DLAMI}
    assert "resolve:ssm" not in (REPO / "cluster.yaml").read_text().split("\nprovider:")[1]
    # The one-time lookup is documented, with the region of the file.
    lookup = documented_command("cluster.yaml", "aws ssm get-parameter")
    assert flag(lookup, "--name") == DLAMI_PARAMETER
    assert flag(lookup, "--region") == config["provider"]["region"]
    statements = policy("head-policy.json")
    images = [r for s in statements for r in as_list(s["Resource"]) if ":image/" in r]
    assert images == [f"arn:aws:ec2:{config['provider']['region']}::image/{DLAMI}"]
    assert not [a for s in statements for a in as_list(s["Action"]) if a.startswith("ssm:")]


def test_cpu_head_and_gpu_workers_pack_four_trials_per_gpu():
    config = load("cluster.yaml")
    head = node_types(config)[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials never land on the head
    assert not re.match(r"^(g|p)\d", head["node_config"]["InstanceType"])
    run = documented_command("cluster.yaml", "ray job submit")
    gpus, cpus = float(flag(run, "--gpus-per-trial")), float(flag(run, "--cpus-per-trial"))
    assert gpus < 1
    for worker in workers(config).values():
        resources = worker["resources"]
        assert resources["GPU"] >= 1
        # The documented packing fills GPU and CPUs together: no resource is left idle.
        assert resources["GPU"] / gpus == resources["CPU"] / cpus == 4


def test_least_privilege_instance_profiles():
    config = load("cluster.yaml")
    arns = {name: t["node_config"]["IamInstanceProfile"]["Arn"]
            for name, t in node_types(config).items()}
    assert arns["head"] == "arn:aws:iam::YOUR_ACCOUNT_ID:instance-profile/resnet-search-head"
    assert {arns[w] for w in workers(config)} == {
        "arn:aws:iam::YOUR_ACCOUNT_ID:instance-profile/resnet-search-worker"}


def test_imdsv2_is_required_on_every_node():
    for node in node_types(load("cluster.yaml")).values():
        assert node["node_config"]["MetadataOptions"] == {
            "HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}


def test_ssh_is_open_only_to_the_users_cidr():
    config = load("cluster.yaml")
    assert "security_group" not in config["provider"]  # Ray would add SSH from 0.0.0.0/0
    groups = {tuple(t["node_config"]["SecurityGroupIds"]) for t in node_types(config).values()}
    assert groups == {("sg-YOUR_CLUSTER_SG",)}
    rules = json.loads((DEPLOY / "network" / "cluster-sg-ingress.json").read_text())
    text = json.dumps(rules)
    assert "0.0.0.0/0" not in text and "::/0" not in text
    for rule in rules:
        if "IpRanges" in rule:  # from outside: SSH only, from the user's CIDR only
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
            assert [r["CidrIp"] for r in rule["IpRanges"]] == ["YOUR_SSH_CIDR"]
        else:  # everything else: between the cluster's own nodes
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == ["sg-YOUR_CLUSTER_SG"]
            assert set(rule) == {"IpProtocol", "UserIdGroupPairs"}


def test_worker_policy_grants_s3_on_the_search_prefix_only():
    config = load("cluster.yaml")
    storage = setting(config, "RESNET_SEARCH_STORAGE")
    assert storage == "s3://YOUR_BUCKET/resnet-search/ray"
    bucket, prefix = storage.removeprefix("s3://").split("/", 1)
    # The wheelhouse the head builds and the workers install from (install.sh's argument).
    (install,) = [c for c in config["worker_setup_commands"] if "install.sh" in c]
    wheels = shlex.split(install)[-1]
    assert wheels == "s3://YOUR_BUCKET/resnet-search/wheels"
    wheels_prefix = wheels.removeprefix(f"s3://{bucket}/")
    for statement in policy("worker-policy.json"):
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert all(a.startswith("s3:") and "*" not in a for a in actions)
        if actions == ["s3:ListBucket"]:
            assert statement["Resource"] == f"arn:aws:s3:::{bucket}"
            prefixes = statement["Condition"]["StringLikeIfExists"]["s3:prefix"]
            assert prefixes and all(p.startswith((prefix, wheels_prefix)) for p in prefixes)
        elif actions == ["s3:GetObject"]:  # the wheelhouse: read, never write
            assert as_list(statement["Resource"]) == [f"arn:aws:s3:::{bucket}/{wheels_prefix}/*"]
        else:
            assert as_list(statement["Resource"]) == [f"arn:aws:s3:::{bucket}/{prefix}/*"]


def test_head_policy_autoscales_this_cluster_only():
    config = load("cluster.yaml")
    statements = policy("head-policy.json")
    region, cluster = config["provider"]["region"], config["cluster_name"]

    def granting(action):
        return [s for s in statements if action in as_list(s["Action"])]

    for statement in statements:
        assert all(a != "*" and not a.endswith(":*") for a in as_list(statement["Action"]))
        if statement["Resource"] == "*":
            assert all(a.startswith("ec2:Describe") for a in as_list(statement["Action"]))
        for arn in as_list(statement["Resource"]):
            assert arn == "*" or arn.split(":")[3] in ("", region)
    instance_arn = f"arn:aws:ec2:{region}:YOUR_ACCOUNT_ID:instance/*"
    launch_instances = [s for s in granting("ec2:RunInstances")
                        if as_list(s["Resource"]) == [instance_arn]]
    assert len(launch_instances) == 1
    condition = launch_instances[0]["Condition"]["StringEquals"]
    assert condition["aws:RequestTag/ray-cluster-name"] == cluster
    assert set(condition["ec2:InstanceType"]) == {
        w["node_config"]["InstanceType"] for w in workers(config).values()}
    other_launch = [a for s in granting("ec2:RunInstances") for a in as_list(s["Resource"])
                    if a != instance_arn]
    assert [a for a in other_launch if ":security-group/" in a] == [
        f"arn:aws:ec2:{region}:YOUR_ACCOUNT_ID:security-group/sg-YOUR_CLUSTER_SG"]
    (terminate,) = granting("ec2:TerminateInstances")
    assert terminate["Condition"] == {
        "StringEquals": {"aws:ResourceTag/ray-cluster-name": cluster}}
    (pass_role,) = granting("iam:PassRole")
    worker_profile = {w["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
                      for w in workers(config).values()}
    assert pass_role["Resource"] == f"arn:aws:iam::YOUR_ACCOUNT_ID:role/{worker_profile.pop()}"
    assert pass_role["Condition"]["StringEquals"]["iam:PassedToService"] == "ec2.amazonaws.com"
    assert not [s for s in statements
                if any(a.startswith("iam:") and a != "iam:PassRole" for a in as_list(s["Action"]))]
    s3 = [r for s in statements for r in as_list(s["Resource"]) if r.startswith("arn:aws:s3")]
    assert s3 and all(r in ("arn:aws:s3:::YOUR_BUCKET", "arn:aws:s3:::YOUR_BUCKET/resnet-search/*")
                      for r in s3)


def test_every_ray_process_runs_with_token_auth():
    for name in CLUSTER_FILES:
        config = load(name)
        commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
        calls = [(c, m.start()) for c in commands for m in re.finditer(r"\bray (start|stop)\b", c)]
        assert len([c for c, at in calls if c.startswith("ray start", at)]) == 2, name
        for command, at in calls:
            assert command[:at].endswith("RAY_AUTH_MODE=token "), (name, command)
        assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
        assert "RAY_AUTH_MODE=token" in node_env_args(config)
        head = " ".join(config["head_start_ray_commands"])
        assert "--dashboard-host=127.0.0.1" in head  # the job API: through `ray dashboard` only
        assert flag(mlflow_server(config), "--host") == "127.0.0.1"


def test_stores_outlive_ray_down():
    config = load("cluster.yaml")
    server = mlflow_server(config)
    backend = flag(server, "--backend-store-uri")
    assert backend == "postgresql://resnet_search@YOUR_POSTGRES_HOST:5432/mlflow?sslmode=require"
    assert flag(server, "--artifacts-destination") == "s3://YOUR_BUCKET/resnet-search/mlflow"
    run = documented_command("cluster.yaml", "ray job submit")
    assert run[:6] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--"]
    assert flag(run, "--tracking-uri") == "http://127.0.0.1:5000"
    assert flag(run, "--storage") == setting(config, "RESNET_SEARCH_STORAGE")
    optuna = flag(run, "--optuna-storage")
    assert optuna == setting(config, "RESNET_SEARCH_OPTUNA_STORAGE")
    assert optuna.startswith("postgresql://resnet_search@YOUR_POSTGRES_HOST:5432/optuna?")
    # The head fetches the password for that host and user and creates both databases.
    (credentials,) = [c for c in config["head_setup_commands"] if "postgres_credentials" in c]
    argv = shlex.split(credentials)
    assert flag(argv, "--host") == "YOUR_POSTGRES_HOST"
    assert flag(argv, "--user") == "resnet_search"
    assert argv[argv.index("--databases") + 1:] == ["mlflow", "optuna"]
    everything = yaml.safe_dump(config)
    assert "sqlite" not in everything and "/tmp" not in everything


def test_spot_workers_resume_elsewhere_with_retries_sized_for_spot():
    config = load("cluster.yaml")
    assert config["provider"]["cache_stopped_nodes"] is False
    head = node_types(config)[config["head_node_type"]]["node_config"]
    assert "InstanceMarketOptions" not in head  # losing the head loses the driver
    for worker in workers(config).values():
        assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
        assert worker["min_workers"] == 0
    run = documented_command("cluster.yaml", "ray job submit")
    assert int(flag(run, "--max-failures")) >= 3  # each reclaimed node costs each trial one
    assert flag(run, "--storage").startswith("s3://")  # checkpoints any node can resume


def test_local_cluster_keeps_its_stores_on_the_heads_disk():
    config = load("cluster-local.yaml")
    assert set(config["provider"]) == {"type", "head_ip", "worker_ips"}
    server = mlflow_server(config)
    assert flag(server, "--backend-store-uri") == "sqlite:////home/u/resnet-search-data/mlflow.db"
    assert flag(server, "--artifacts-destination") == "/home/u/resnet-search-data/mlartifacts"
    run = documented_command("cluster-local.yaml", "ray job submit")
    assert flag(run, "--optuna-storage") == (
        "sqlite:////home/YOUR_SSH_USER/resnet-search-data/optuna.db")
    assert flag(run, "--storage") == setting(config, "RESNET_SEARCH_STORAGE")
    assert flag(run, "--storage").startswith("YOUR_SHARED_DIR/")


# --- the node scripts ------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_packages_go_into_a_virtual_environment(name):
    config = prepared(name)  # Ray's defaults merged in, as `ray up` runs them
    commands = " ".join(config["initialization_commands"] + config["head_setup_commands"]
                        + config["worker_setup_commands"])
    assert "bash ~/resnet-search/deploy/cluster/install.sh" in commands
    assert "pip install" not in commands  # nothing into the system Python
    script = (DEPLOY / "cluster" / "install.sh").read_text()
    assert 'python3 -m venv --clear "$venv"' in script


def run_node_env(home: Path, args: list[str]) -> None:
    subprocess.run(["bash", str(DEPLOY / "cluster" / "node-env.sh"), *args], check=True,
                   env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("shell", [
    ["bash", "--login", "-c"],  # ray attach, ssh
    ["bash", "-i", "-c"],  # a terminal opened inside one
    ["bash", "--login", "-c", "-i", "source ~/.bashrc; "],  # how Ray runs node commands
])
def test_every_shell_on_a_node_has_token_auth(tmp_path, shell):
    home = tmp_path
    # Ubuntu's files: .bashrc stops early unless interactive; .profile sources .bashrc.
    (home / ".bashrc").write_text('case $- in *i*) ;; *) return;; esac\nalias ll="ls -l"\n')
    (home / ".profile").write_text('[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"\n')
    args = node_env_args(load("cluster.yaml"))
    run_node_env(home, args)
    run_node_env(home, args)  # `ray up` re-runs it: nothing doubles
    source_line = "[ -f ~/.resnet-search.env ] && . ~/.resnet-search.env"
    for rc in (".bashrc", ".profile"):
        assert (home / rc).read_text().splitlines().index(source_line) == 0
        assert (home / rc).read_text().splitlines().count(source_line) == 1
    probe = 'echo "$RAY_AUTH_MODE|$RESNET_SEARCH_OPTUNA_STORAGE|$PATH"'
    command = shell[:-1] + [shell[-1] + probe] if shell[-1].endswith("; ") else shell + [probe]
    out = subprocess.run(command, env={"HOME": str(home), "PATH": "/usr/bin:/bin",
                                       "TERM": "dumb"},
                         cwd=home, capture_output=True, text=True, timeout=30)
    mode, optuna, path = out.stdout.strip().splitlines()[-1].split("|")
    assert mode == "token"
    assert optuna == setting(load("cluster.yaml"), "RESNET_SEARCH_OPTUNA_STORAGE")
    assert path.split(":")[0] == f"{home}/venv/bin"


def test_node_env_rejects_an_argument_that_is_not_an_assignment(tmp_path):
    done = subprocess.run(["bash", str(DEPLOY / "cluster" / "node-env.sh"), "RAY_AUTH_MODE"],
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode != 0 and "NAME=VALUE" in done.stderr


def check_driver(tmp_path: Path, cuda: str | None) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if cuda is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text("#!/bin/sh\necho '| NVIDIA-SMI 580.105.08  Driver Version: 580.105.08"
                        f"  CUDA Version: {cuda}  |'\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(["bash", str(DEPLOY / "cluster" / "install.sh"), "--check-driver"],
                          env={"HOME": str(tmp_path), "PATH": f"{bin_dir}:/usr/bin:/bin"},
                          capture_output=True, text=True)


@pytest.mark.parametrize("cuda", ["13.2", "13.0", None])
def test_a_driver_for_the_locked_torchs_cuda_passes(tmp_path, cuda):
    done = check_driver(tmp_path, cuda)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cuda13.0"  # PyPI's torch 2.14.1 (the lock's nvidia runtime)


def test_a_driver_too_old_for_the_locked_torch_fails_setup(tmp_path):
    done = check_driver(tmp_path, "12.8")
    assert done.returncode != 0 and "CUDA 12.8" in done.stderr and "CUDA 13.0" in done.stderr


# --- PostgreSQL credentials ------------------------------------------------------------------

@pytest.fixture(scope="module")
def credentials():
    path = DEPLOY / "cluster" / "postgres_credentials.py"
    spec = importlib.util.spec_from_file_location("postgres_credentials", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pgpass_is_private_escaped_and_keeps_other_entries(credentials, tmp_path):
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text("other:5432:*:someone:secret\nhost:5432:*:me:old\n")
    credentials.write_pgpass(pgpass, "host", 5432, "me", "pa:ss\\word")
    assert pgpass.read_text() == "other:5432:*:someone:secret\nhost:5432:*:me:pa\\:ss\\\\word\n"
    assert stat.S_IMODE(os.stat(pgpass).st_mode) == 0o600


def test_database_and_user_names_are_checked_identifiers(credentials):
    """They go into SQL quoted; only this form may (the SQL itself: test_postgres_user.py)."""
    for bad in ['x"; DROP DATABASE optuna; --', "Mlflow", "1st", "", "a-b"]:
        with pytest.raises(ValueError, match="lower-case"):
            credentials.check_name("database", bad)
    assert credentials.check_name("user", "resnet_search") == "resnet_search"


# --- (7) dependencies ------------------------------------------------------------------------

def project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements(strings: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, strings)}


@pytest.mark.parametrize(("name", "last_vulnerable"), [
    ("torch", "2.5.1"),  # CVE-2025-32434: torch.load(weights_only=True) runs code
    ("torch", "2.12.1"),  # GHSA-rrmf-rvhw-rf47
    ("ray", "2.51.0"),  # no token authentication before 2.52
    ("ray", "2.54.1"),  # CVE-2026-32981
    ("mlflow", "3.12.0"),  # CVE-2026-8147
    ("requests", "2.32.3"),  # CVE-2024-47081
])
def test_dependency_floors_exclude_known_vulnerable_releases(name, last_vulnerable):
    requirement = requirements(project()["dependencies"])[name]
    assert not requirement.specifier.contains(last_vulnerable)
    assert requirement.specifier.contains(importlib.metadata.version(name))


def test_every_imported_library_is_declared():
    declared = set(requirements(project()["dependencies"]))
    distributions = importlib.metadata.packages_distributions()
    imported = set()
    for package in ("residual", "spaces", "search"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"residual", "spaces", "search"}
    assert {"requests", "yaml"} <= third_party
    undeclared = {name for name in third_party
                  if not {canonicalize_name(d) for d in distributions.get(name, [name])}
                  & declared}
    assert not undeclared, f"imported but not in [project] dependencies: {sorted(undeclared)}"


def test_cluster_only_packages_stay_in_the_cluster_extra():
    base = requirements(project()["dependencies"])
    cluster = requirements(project()["optional-dependencies"]["cluster"])
    assert "default" in cluster["ray"].extras
    assert {"boto3", "psycopg2-binary"} <= set(cluster)
    assert not {"boto3", "psycopg2-binary"} & set(base)


def test_cluster_pins_fit_the_project_and_match_the_local_ray():
    specifiers = requirements(project()["dependencies"])
    pins = {}
    for line in (DEPLOY / "cluster" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    assert {"ray", "torch", "torchvision", "mlflow"} <= set(pins)
    for name, version in pins.items():
        assert specifiers[name].specifier.contains(version), (name, version)
    # `ray up` from this machine drives the cluster: Ray must be the same version on both.
    assert pins["ray"] == importlib.metadata.version("ray")
