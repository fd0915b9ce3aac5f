#!/usr/bin/python3
"""it_deploy: the files of deploy/ agree with each other and with the binary that ctest built.

No Docker engine or Kubernetes runs here, so this test reads the files as those tools would
and checks what can go wrong without running them:

  files      every YAML (yaml.safe_load_all) and JSON file under deploy/ parses
  example    deploy/streamseg.conf.example is `streamseg config-doc --conf`, byte for byte;
             it names every key of the table, and uncommenting every key gives a valid file
  configs    every streamseg configuration (the image's default file, the example, the compose
             config, the ConfigMap, each with the -X arguments of its command line) passes
             `streamseg run --check-config`
  xkeys      every `-X key=` in deploy/ and in the README's run/inspect commands is a key the
             binary accepts (kafka.* asked to librdkafka through --check-config); no streamseg
             container sets STREAMSEG_*/SSEG_* variables (the binary reads no configuration from
             the environment: such a variable would be silently ignored)
  dockerfile the build stage installs tools/build.sh's build_pkgs, no more, no less; the
             runtime stage holds the Debian package of every shared library the built binary
             needs (readelf + dpkg), no -dev package, runs as non-root, has the VOLUME of
             state.dir, EXPOSEs and health-checks the port of http.listen, and its entrypoint
             reads the config file it installs
  compose    Kafka in KRaft mode (combined node), two streamseg instances in one group with
             their own state volumes and host ports and a state changelog, addresses that name
             compose services and their listeners, every *.topic created (profiles and
             changelog compacted, the changelog with the input's partitions), bind mounts exist
  prometheus its targets are the compose instances on the port of http.listen, path /metrics
  grafana    the dashboard's datasource is the provisioned one, the provider path is where
             compose mounts the dashboards, and its PromQL uses only metric names (and labels)
             of the top-level METRICS.md; it shows events/s, lag, DLQ by reason, commit-cycle p99, segment
             sizes, churn alert rate and cache hit rate
  k8s        StatefulSet, ConfigMap, headless Service, PodDisruptionBudget agree: the state
             volume is mounted at state.dir, the config where the entrypoint reads it,
             liveness /healthz and readiness /readyz on the port of http.listen, the
             Service/PDB selectors match the pods, the grace period covers a graceful stop
  systemd    the unit runs `streamseg run` with SIGTERM, a stop timeout, its StateDirectory as
             state.dir and hardening options; `systemd-analyze verify` (when installed) is silent

Every check is a function returning a list of problems. Each runs once on the real files (no
problem expected) and once or more on an in-memory copy with a deliberate mistake (a problem
expected), so that a check that cannot fail fails the test.
"""
import copy
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("SSEG_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
STREAMSEG = os.environ.get("STREAMSEG") or os.path.join(SRC, "build", "streamseg")
DEPLOY = os.path.join(SRC, "deploy")
TMP = tempfile.mkdtemp(prefix="it_deploy.")

CONF_PATH = "/etc/streamseg/streamseg.conf"  # what the image's entrypoint reads (checked)


# ---- helpers ------------------------------------------------------------------------------


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, SRC)


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def parse_conf(text):
    """key -> value of a streamseg config text, as conf.c reads it (later lines win)."""
    out = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        k, eq, v = s.partition("=")
        out[k.strip()] = v.strip() if eq else None
    return out


def table():
    """(table defaults, kafka defaults) from `streamseg config-doc --conf`."""
    r = sh([STREAMSEG, "config-doc", "--conf"])
    assert r.returncode == 0, r.stderr
    props, kafka = {}, {}
    for m in re.finditer(r"^#([a-z][a-z0-9.]*)=(.*)$", r.stdout, re.M):
        (kafka if m.group(1).startswith("kafka.") else props)[m.group(1)] = m.group(2)
    assert len(props) > 20, "config-doc --conf lists too few properties"
    return props, kafka


PROPS, KAFKA_DEFAULTS = table()


def effective(conf_text, xargs=()):
    """The effective configuration: defaults, the file, then -X arguments."""
    eff = dict(PROPS)
    eff.update(KAFKA_DEFAULTS)
    eff.update(parse_conf(conf_text))
    for kv in xargs_pairs(xargs):
        eff[kv[0]] = kv[1]
    return eff


def xargs_pairs(args):
    out = []
    args = list(args)
    for i, a in enumerate(args):
        if a == "-X" and i + 1 < len(args):
            k, _, v = args[i + 1].partition("=")
            out.append((k.strip(), v.strip()))
    return out


def check_config(conf_text, xargs=(), what="config"):
    """Problems of `streamseg run --check-config -c FILE [-X ...]` on conf_text."""
    path = os.path.join(TMP, "check.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(conf_text)
    r = sh([STREAMSEG, "run", "--check-config", "-c", path] + list(xargs))
    if r.returncode != 0 or r.stdout.strip() != "config OK":
        return [f"{what}: --check-config exit {r.returncode}: {r.stderr.strip()}"]
    return []


def key_problem(key, value="x"):
    """None when the binary accepts key, else why not."""
    if key.startswith("kafka."):
        r = sh([STREAMSEG, "run", "--check-config", "-X", f"{key}={value}"])
        if "No such configuration property" in r.stderr or "empty librdkafka" in r.stderr:
            return r.stderr.strip()
        return None
    if key not in PROPS:
        return f"{key}: not a property of the table (streamseg config-doc --conf)"
    return None


def listen_port(listen):
    host, _, port = (listen or "").rpartition(":")
    return host, int(port) if port.isdigit() else None


def no_env_config(env, what):
    names = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env or []]
    return [f"{what}: environment variable {n} (streamseg reads no configuration from the "
            f"environment; use -X or the config file)"
            for n in names if re.match(r"(STREAMSEG|SSEG)_", n)]


# ---- files ----------------------------------------------------------------------------------


def deploy_files(exts):
    out = []
    for root, _, files in os.walk(DEPLOY):
        for f in sorted(files):
            if any(f.endswith(e) for e in exts):
                out.append(os.path.join(root, f))
    return sorted(out)


def check_files(texts):
    """texts: {path: text}; every YAML and JSON parses."""
    probs = []
    for path, text in texts.items():
        try:
            if path.endswith(".json"):
                json.loads(text)
            else:
                docs = list(yaml.safe_load_all(text))
                if not any(d is not None for d in docs):
                    probs.append(f"{rel(path)}: no YAML document")
        except (ValueError, yaml.YAMLError) as e:
            probs.append(f"{rel(path)}: does not parse: {' '.join(str(e).split())}")
    return probs


# ---- the example config ---------------------------------------------------------------------


def check_example(example, generated):
    probs = []
    if example != generated:
        probs.append("deploy/streamseg.conf.example differs from `streamseg config-doc --conf`"
                     " (regenerate: cmake --build build --target docs)")
    keys = set(re.findall(r"^#([a-z][a-z0-9.]*)=", example, re.M))
    want = set(PROPS) | set(KAFKA_DEFAULTS)
    if keys != want:
        probs.append(f"example: keys missing {sorted(want - keys)}, unknown {sorted(keys - want)}")
    lines = example.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#[a-z][a-z0-9.]*=", line) and not line.startswith("#kafka."):
            if i < 2 or not lines[i - 1].startswith("# ") or not lines[i - 2].startswith("# "):
                probs.append(f"example: {line} has no description above it")
    uncommented = re.sub(r"^#([a-z][a-z0-9.]*=)", r"\1", example, flags=re.M)
    probs += check_config(uncommented, what="example with every default uncommented")
    return probs


# ---- -X keys ---------------------------------------------------------------------------------

XKEY_RE = re.compile(r"""-X["']?\s*,?\s*["']?([A-Za-z0-9_.\-]*)=([^\s"',\]]*)""")


def xkeys_in(text):
    return [(m.group(1), m.group(2)) for m in XKEY_RE.finditer(text)]


def readme_commands(text):
    """README lines (continuations joined) that run `streamseg run` or `streamseg inspect`."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return "\n".join(line for line in joined.splitlines()
                     if re.search(r"streamseg (run|inspect)\b", line))


# How usage texts spell "-X key=value"; not keys.
XKEY_PLACEHOLDERS = {("key", "value"), ("k", "v")}


def check_xkeys(texts):
    """texts: {name: text}; every -X key is accepted."""
    probs = []
    for name, text in texts.items():
        for key, value in xkeys_in(text):
            if (key, value) in XKEY_PLACEHOLDERS:
                continue
            # placeholders of the orchestrators ($(POD_NAME), ${STATE_DIRECTORY}) are values
            why = key_problem(key, re.sub(r"\$[({][^)}]*[)}]", "x", value) or "x")
            if why:
                probs.append(f"{name}: -X {key}=: {why}")
    return probs


# ---- Dockerfile ------------------------------------------------------------------------------


def dockerfile_stages(text):
    """[(name, [(INSTR, args)])]: continuation lines joined, comments dropped."""
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages = []
    for line in lines:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.search(r"\bAS\s+(\S+)", args, re.I)
            stages.append((m.group(1) if m else str(len(stages)), [("FROM", args.strip())]))
        elif stages:
            stages[-1][1].append((instr, args.strip()))
    return stages


def apt_installs(instrs):
    pkgs = []
    for instr, args in instrs:
        if instr != "RUN":
            continue
        for cmd in re.split(r"&&|\|\||;", args):
            toks = shlex.split(cmd)
            if "apt-get" in toks and "install" in toks:
                after = toks[toks.index("install") + 1:]
                pkgs += [t for t in after if not t.startswith("-")]
    return pkgs


def build_pkgs(build_sh):
    m = re.search(r"^build_pkgs=\(([^)]*)\)", build_sh, re.M)
    assert m, "tools/build.sh: no build_pkgs=(...)"
    return m.group(1).split()


def needed_packages():
    """{soname: Debian package} of the built binary's direct shared libraries."""
    r = sh(["readelf", "-d", STREAMSEG])
    assert r.returncode == 0, r.stderr
    sonames = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)
    paths = {}
    for line in sh(["ldd", STREAMSEG]).stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            paths[m.group(1)] = m.group(2)
    out = {}
    for so in sonames:
        p = paths.get(so)
        cands = []
        if p:
            for q in (p, os.path.realpath(p)):
                cands += [q, re.sub(r"^/usr/lib/", "/lib/", q), re.sub(r"^/lib/", "/usr/lib/", q)]
        pkg = None
        for c in cands:
            r = sh(["dpkg", "-S", c])
            if r.returncode == 0:
                pkg = r.stdout.split(":", 1)[0].strip()
                break
        out[so] = pkg
    return out


def depends_of(pkg):
    """The packages pkg depends on (installed ones only; alternatives included)."""
    r = sh(["dpkg-query", "-W", "-f=${Depends}", pkg])
    if r.returncode != 0:
        return set()
    return {re.sub(r"[\s(:].*", "", a.strip()) for d in r.stdout.split(",") for a in d.split("|")}


def apt_known():
    """A function telling whether the apt lists know a package, or None without apt lists
    (then the package names are checked only through the libraries' owners)."""
    if not glob.glob("/var/lib/apt/lists/*_Packages*"):
        return None

    cache = {}

    def ask(pkgs):
        # one apt-cache run for many packages (each run reads the lists: ~0.5 s)
        r = sh(["apt-cache", "policy"] + pkgs)
        for m in re.finditer(r"^(\S+):\n(?:\s+\S.*\n)*?\s+Candidate:\s*(\S+)", r.stdout, re.M):
            cache[m.group(1)] = m.group(2) != "(none)"
        for p in pkgs:
            cache.setdefault(p, False)

    def known(pkg):
        if pkg not in cache:
            ask([pkg])
        return cache[pkg]
    known.prefetch = ask
    return known


# Runtime packages that are not libraries of the binary: the CA store (SSL to Kafka, https
# registry) and curl (the HEALTHCHECK).
RUNTIME_TOOLS = {"ca-certificates", "curl"}

# Packages of debian:bookworm-slim itself (Essential or apt's own dependencies).
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def check_dockerfile(text, build_list, needed, known=None, ignore=None, copy_root=SRC):
    """ignore: the text of deploy/Dockerfile.dockerignore (an allow-list after '*')."""
    probs = []
    stages = dockerfile_stages(text)
    if ignore is not None:
        allowed = [l[1:].rstrip("/") for l in ignore.splitlines() if l.startswith("!")]
        for _, instrs in stages:
            for i, a in instrs:
                if i == "COPY" and not a.startswith("--from"):
                    for src in a.split()[:-1]:
                        src = src.rstrip("/")
                        if not any(src == p or src.startswith(p + "/") for p in allowed):
                            probs.append(f"Dockerfile: COPY {src} is excluded by "
                                         f"Dockerfile.dockerignore")
    if len(stages) < 2:
        return [f"Dockerfile: {len(stages)} stage(s); want a build and a runtime stage"]
    for name, instrs in stages:
        if "bookworm" not in instrs[0][1]:
            probs.append(f"Dockerfile stage {name}: not Debian bookworm: FROM {instrs[0][1]}")
    (bname, build), (rname, runtime) = stages[0], stages[-1]
    got = apt_installs(build)
    if sorted(got) != sorted(build_list):
        probs.append(f"Dockerfile build stage {bname}: apt packages differ from tools/build.sh "
                     f"build_pkgs: missing {sorted(set(build_list) - set(got))}, extra "
                     f"{sorted(set(got) - set(build_list))}")
    if not any(i == "RUN" and "cmake --build" in a for i, a in build):
        probs.append("Dockerfile build stage: no `cmake --build`")
    # every top-level path CMakeLists.txt reads (not the docs target's outputs, after '>')
    copied = {a.split()[0].rstrip("/").split("/")[0] for i, a in build
              if i == "COPY" and not a.startswith("--from")}
    cmake = read(os.path.join(copy_root, "CMakeLists.txt"))
    for m in re.finditer(r"(>\s*)?\$\{CMAKE_SOURCE_DIR\}/([A-Za-z0-9_.\-]+)", cmake):
        if not m.group(1) and m.group(2) not in copied:
            probs.append(f"Dockerfile build stage: CMakeLists.txt reads {m.group(2)}, "
                         f"which is not copied")
    rpkgs = apt_installs(runtime)
    for p in rpkgs:
        if p.endswith("-dev") or p in ("gcc", "cmake", "make", "pkg-config"):
            probs.append(f"Dockerfile runtime stage: build package {p}")
    if known:
        for p in rpkgs + got:
            if not known(p):
                probs.append(f"Dockerfile: {p} is not a package the apt lists know")
    provided = set(rpkgs) | BASE_PACKAGES
    for p in rpkgs:
        provided |= depends_of(p)
    # ...and nothing else: each runtime package owns (or depends on the owner of) a library
    # the binary needs, or is one of the two tools the stage explains.
    owners = set(needed.values()) - BASE_PACKAGES  # every package depends on libc6
    for p in rpkgs:
        if p not in RUNTIME_TOOLS and p not in owners and not (depends_of(p) & owners):
            probs.append(f"Dockerfile runtime stage: {p} holds no library the binary needs")
    for so, pkg in needed.items():
        if pkg is None:
            probs.append(f"{so}: no Debian package owns it (dpkg -S)")
        elif pkg not in provided:
            probs.append(f"Dockerfile runtime stage: {so} is in {pkg}, which it does not install")
    entry = [json.loads(a) for i, a in runtime if i == "ENTRYPOINT"]
    if not entry or entry[-1][:2] != ["/usr/bin/streamseg", "run"] or "-c" not in entry[-1]:
        probs.append(f"Dockerfile: ENTRYPOINT is not `streamseg run -c FILE`: {entry}")
        return probs
    conf_path = entry[-1][entry[-1].index("-c") + 1]
    if conf_path != CONF_PATH:
        probs.append(f"Dockerfile: entrypoint reads {conf_path}; compose and k8s mount {CONF_PATH}")
    users = [a for i, a in runtime if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        probs.append(f"Dockerfile runtime stage: runs as root (USER {users})")
    conf_text = None
    for i, a in runtime:
        if i == "COPY" and not a.startswith("--from"):
            src, dst = a.split()[0], a.split()[-1]
            if not os.path.exists(os.path.join(copy_root, src)):
                probs.append(f"Dockerfile: COPY {src}: no such file in the repository")
            elif dst == conf_path:
                conf_text = read(os.path.join(copy_root, src))
    if conf_text is None:
        probs.append(f"Dockerfile: nothing is copied to {conf_path}")
        return probs
    probs += check_config(conf_text, what="image config (deploy/docker/streamseg.conf)")
    eff = effective(conf_text)
    volumes = [v for i, a in runtime if i == "VOLUME" for v in
               (json.loads(a) if a.startswith("[") else a.split())]
    if eff["state.dir"] not in volumes:
        probs.append(f"Dockerfile: state.dir {eff['state.dir']} is not a VOLUME ({volumes})")
    host, port = listen_port(eff["http.listen"])
    if host not in ("0.0.0.0", "", "[::]", "::"):
        probs.append(f"Dockerfile: http.listen {eff['http.listen']} is not reachable from outside")
    exposed = [a.split("/")[0] for i, a in runtime if i == "EXPOSE" for a in a.split()]
    if str(port) not in exposed:
        probs.append(f"Dockerfile: EXPOSE {exposed} lacks the http.listen port {port}")
    health = " ".join(a for i, a in runtime if i == "HEALTHCHECK")
    if f":{port}/healthz" not in health:
        probs.append(f"Dockerfile: HEALTHCHECK does not ask /healthz on port {port}: {health}")
    if any(i == "ENV" and re.search(r"\b(STREAMSEG|SSEG)_", a) for i, a in runtime):
        probs.append("Dockerfile: ENV STREAMSEG_*/SSEG_* (streamseg reads no configuration from "
                     "the environment)")
    return probs


def image_uid(text):
    users = [a for i, a in dockerfile_stages(text)[-1][1] if i == "USER"]
    return int(users[-1].split(":")[0]) if users and users[-1].split(":")[0].isdigit() else None


# ---- compose ---------------------------------------------------------------------------------


def compose_instances(compose):
    """Services that run `streamseg run` (the image's entrypoint, not overridden)."""
    return {n: s for n, s in compose["services"].items()
            if str(s.get("image", "")).startswith("streamseg") and "entrypoint" not in s}


def compose_conf(compose, svc):
    """The text of the config mounted at CONF_PATH in svc, or None."""
    for c in svc.get("configs", []):
        if isinstance(c, dict) and c.get("target") == CONF_PATH:
            top = compose.get("configs", {}).get(c["source"], {})
            if "content" in top:
                return top["content"]
            if "file" in top:
                return read(os.path.join(DEPLOY, top["file"]))
    for v in svc.get("volumes", []):
        if isinstance(v, str) and v.split(":")[1:2] == [CONF_PATH]:
            return read(os.path.join(DEPLOY, v.split(":")[0]))
    return None


def as_list(cmd):
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def seconds(v):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(v).strip())
    if not m:
        return None
    n = int(m.group(1))
    return {"ms": n / 1000, "s": n, "m": n * 60, None: n}[m.group(2)]


def url_host_port(url, default_port):
    m = re.match(r"^(?:[a-z]+://)?([^:/]+)(?::(\d+))?", url)
    return m.group(1), int(m.group(2) or default_port)


def listener_ports(value):
    return {int(p) for p in re.findall(r":(\d+)", str(value or ""))}


def check_compose(compose):
    probs = []
    services = compose.get("services", {})
    inst = compose_instances(compose)
    if len(inst) < 2:
        return [f"compose: {len(inst)} streamseg instance(s); want two"]
    kafka = [n for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")
             and "entrypoint" not in s]
    if len(kafka) != 1:
        return [f"compose: want one apache/kafka broker service, found {kafka}"]
    kenv = services[kafka[0]].get("environment", {})
    roles = set(str(kenv.get("KAFKA_PROCESS_ROLES", "")).split(","))
    if roles != {"broker", "controller"}:
        probs.append(f"compose: Kafka is not a combined KRaft node: KAFKA_PROCESS_ROLES={roles}")
    voters = str(kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS", ""))
    if not voters.startswith(f"{kenv.get('KAFKA_NODE_ID')}@{kafka[0]}:"):
        probs.append(f"compose: controller quorum {voters} is not this node")
    if "CONTROLLER" not in str(kenv.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")) or \
            not kenv.get("CLUSTER_ID"):
        probs.append("compose: KRaft needs KAFKA_CONTROLLER_LISTENER_NAMES and CLUSTER_ID")
    registry = [n for n, s in services.items() if "schema-registry" in str(s.get("image", ""))]
    if len(registry) != 1:
        probs.append(f"compose: want one Schema Registry, found {registry}")
    groups, states, hostports = {}, {}, {}
    topics_needed, ports = set(), set()
    for name, svc in inst.items():
        text = compose_conf(compose, svc)
        if text is None:
            probs.append(f"compose {name}: no config mounted at {CONF_PATH}")
            continue
        if re.search(r"\$(?!\$)", text.replace("$$", "")):
            probs.append(f"compose {name}: '$' in the config (compose would interpolate it)")
        xargs = as_list(svc.get("command"))
        probs += check_config(text.replace("$$", "$"), xargs, what=f"compose {name}")
        eff = effective(text, xargs)
        groups[name] = eff["kafka.group.id"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])
                  if isinstance(v, str)}
        if eff["state.dir"] not in mounts:
            probs.append(f"compose {name}: no volume at state.dir {eff['state.dir']}")
        else:
            states[name] = mounts[eff["state.dir"]]
        host, port = listen_port(eff["http.listen"])
        ports.add(port)
        if host not in ("0.0.0.0", "", "[::]", "::"):
            probs.append(f"compose {name}: http.listen {eff['http.listen']} is loopback-only")
        published = [str(p).rsplit(":", 2) for p in svc.get("ports", [])]
        mine = [p[-2] for p in published if len(p) >= 2 and p[-1] == str(port)]
        if not mine:
            probs.append(f"compose {name}: http.listen port {port} is not published")
        hostports[name] = mine
        bhost, bport = url_host_port(eff["kafka.bootstrap.servers"].split(",")[0], 9092)
        if bhost not in services or bport not in listener_ports(
                services.get(bhost, {}).get("environment", {}).get("KAFKA_ADVERTISED_LISTENERS")):
            probs.append(f"compose {name}: kafka.bootstrap.servers {bhost}:{bport} is not an "
                         f"advertised listener of a compose service")
        if eff["input.format"] == "confluent" and eff["schema.registry.url"]:
            rhost, rport = url_host_port(eff["schema.registry.url"], 80)
            renv = services.get(rhost, {}).get("environment", {})
            if rhost not in services or rport not in listener_ports(
                    renv.get("SCHEMA_REGISTRY_LISTENERS")):
                probs.append(f"compose {name}: schema.registry.url {rhost}:{rport} is not a "
                             f"compose Schema Registry listener")
        # every topic property of the table (inputs and outputs; empty = disabled)
        topics_needed |= {v for k, v in eff.items() if k.endswith(".topic") and v}
        topics_needed.add(("compact", eff["output.profiles.topic"]))
        # several instances: partitions move between them, their state with them
        if not eff.get("model.topic"):
            probs.append(f"compose {name}: {len(inst)} instances without model.topic (each "
                         f"would learn its own segments)")
        else:
            topics_needed.add(("model", eff["model.topic"]))
        if not eff.get("state.changelog.topic"):
            probs.append(f"compose {name}: {len(inst)} instances without state.changelog.topic")
        else:
            topics_needed.add(("compact", eff["state.changelog.topic"]))
            topics_needed.add(("changelog", eff["state.changelog.topic"], eff["input.topic"]))
        probs += no_env_config(svc.get("environment", {}), f"compose {name}")
        grace = seconds(svc.get("stop_grace_period", "10s"))
        if grace is None or grace < 30:
            probs.append(f"compose {name}: stop_grace_period {svc.get('stop_grace_period')} "
                         f"is shorter than 30 s (a graceful stop delivers the last cycle)")
    if len(set(groups.values())) != 1:
        probs.append(f"compose: the instances are in different consumer groups: {groups}")
    if len(set(states.values())) != len(states):
        probs.append(f"compose: the instances share a state volume: {states}")
    hosts = [s.get("hostname") for s in inst.values()]
    if None in hosts or len(set(hosts)) != len(hosts):
        probs.append(f"compose: the instances need distinct stable host names (the default "
                     f"transactional.id of exactly_once derives from it): {hosts}")
    flat = [p for v in hostports.values() for p in v]
    if len(set(flat)) != len(flat):
        probs.append(f"compose: the instances publish the same host port: {hostports}")
    # Topics: created by the init service (kafka-topics.sh --create) before the instances.
    created = {}
    for s in services.values():
        script = " ".join(as_list(s.get("command")) + as_list(s.get("entrypoint")))
        if "kafka-topics.sh" in script:
            for m in re.finditer(r"^\s*t\s+(\S+)(.*)$", script, re.M):
                created[m.group(1)] = m.group(2)
    def partitions(topic):
        m = re.search(r"--partitions\s+(\d+)", created.get(topic, ""))
        return int(m.group(1)) if m else None
    for t in topics_needed:
        if isinstance(t, tuple) and t[0] == "model":
            if (partitions(t[1]) or 0) < 2 or "retention.ms=-1" not in created.get(t[1], ""):
                probs.append(f"compose: model topic {t[1]} needs 2 partitions and "
                             f"retention.ms=-1")
        elif isinstance(t, tuple) and t[0] == "changelog":
            if (partitions(t[1]) or 0) < (partitions(t[2]) or 1 << 30):
                probs.append(f"compose: changelog {t[1]} has fewer partitions than {t[2]}")
        elif isinstance(t, tuple):
            if "cleanup.policy=compact" not in created.get(t[1], ""):
                probs.append(f"compose: topic {t[1]} is not created compacted")
        elif t not in created:
            probs.append(f"compose: topic {t} is not created by the init service")
    # Bind mounts exist.
    for name, s in services.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else ""
            if src.startswith(".") and not os.path.exists(os.path.join(DEPLOY, src)):
                probs.append(f"compose {name}: bind mount {src} does not exist")
    return probs


# ---- Prometheus and Grafana -------------------------------------------------------------------


def compose_http_port(compose):
    ports = {listen_port(effective(compose_conf(compose, s), as_list(s.get("command")))
                         ["http.listen"])[1] for s in compose_instances(compose).values()}
    return ports.pop() if len(ports) == 1 else None


def check_prometheus(prom, compose):
    probs = []
    port = compose_http_port(compose)
    want = {f"{n}:{port}" for n in compose_instances(compose)}
    jobs = [j for j in prom.get("scrape_configs", []) if any(
        t in want for sc in j.get("static_configs", []) for t in sc.get("targets", []))]
    if not jobs:
        return [f"prometheus.yml: no job scrapes {sorted(want)}"]
    got = {t for j in jobs for sc in j.get("static_configs", []) for t in sc.get("targets", [])}
    if got != want:
        probs.append(f"prometheus.yml: targets {sorted(got)}, want {sorted(want)}")
    for j in jobs:
        if j.get("metrics_path", "/metrics") != "/metrics":
            probs.append(f"prometheus.yml: job {j.get('job_name')} scrapes {j['metrics_path']}")
    return probs


def load_metrics(text):
    """{name: (labels, type)} from METRICS.md's table: | `name` | type | labels | meaning |."""
    out = {}
    for line in text.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cols[0]) if len(cols) >= 3 else None
        if m:
            labels = {l.strip() for l in cols[2].split(",") if l.strip()}
            out[m.group(1)] = (labels, cols[1])
    return out


def expr_metrics(expr, metrics):
    """(metric names, problems) of a PromQL expression."""
    probs, used, labels_ok = [], set(), {"instance", "job"}
    for name in set(re.findall(r"\bstreamseg_[a-zA-Z0-9_:]*", expr)):
        base = name
        if name not in metrics:
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and metrics.get(name[: -len(suf)], ({}, ""))[1] == \
                        "histogram":
                    base = name[: -len(suf)]
                    if suf == "_bucket":
                        labels_ok.add("le")
        if base not in metrics:
            probs.append(f"unknown metric {name}")
            continue
        used.add(base)
        labels_ok |= metrics[base][0]
    if not used and not probs:
        probs.append("uses no streamseg metric")
    for ident in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr):
        if not ident.startswith("streamseg_"):
            probs.append(f"selector on a metric that is not streamseg's: {ident}")
    labels = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr))
    labels = {l.strip() for group in labels for l in group.split(",") if l.strip()}
    for sel in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
    for l in sorted(labels - labels_ok):
        probs.append(f"label {l} is not a label of {sorted(used)}")
    return used, probs


# What the dashboard must show: (what, predicate on the expressions).
DASHBOARD_NEEDS = [
    ("events/s", lambda e: re.search(r"rate\(streamseg_events_processed_total", e)),
    ("lag", lambda e: re.search(r"streamseg_(consumer|partition)_lag\b", e)),
    ("DLQ by reason", lambda e: "streamseg_dead_letters_total" in e and
     re.search(r"by\s*\(\s*reason\s*\)", e)),
    ("commit cycle p99", lambda e: re.search(
        r"histogram_quantile\(\s*0\.99\s*,.*streamseg_commit_cycle_seconds_bucket", e)),
    ("segment sizes", lambda e: "streamseg_segment_users" in e),
    ("churn alerts rate", lambda e: re.search(r"rate\(streamseg_churn_alerts_total", e)),
    ("cache hit rate", lambda e: "streamseg_cache_hits_total" in e and
     "streamseg_cache_misses_total" in e),
]


def dashboard_exprs(dash):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title"), t["expr"], t.get("datasource", p.get("datasource"))))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    return out


def check_grafana(dash, ds_prov, dash_prov, compose, metrics):
    probs = []
    services = compose["services"]
    ds = [d for d in ds_prov.get("datasources", []) if d.get("type") == "prometheus"]
    if len(ds) != 1:
        return [f"grafana: want one provisioned Prometheus datasource, found {len(ds)}"]
    uid = ds[0].get("uid")
    host, port = url_host_port(ds[0].get("url", ""), 80)
    prom = [n for n, s in services.items() if str(s.get("image", "")).startswith("prom/prometheus")]
    if host not in prom or port != 9090:
        probs.append(f"grafana: datasource URL {ds[0].get('url')} is not the compose Prometheus")
    graf = [s for s in services.values() if str(s.get("image", "")).startswith("grafana/")]
    mounts = {v.split(":")[1]: v.split(":")[0] for g in graf for v in g.get("volumes", [])}
    paths = [p.get("options", {}).get("path") for p in dash_prov.get("providers", [])]
    if not any(mounts.get(p) == "./grafana/dashboards" for p in paths):
        probs.append(f"grafana: provider paths {paths} are not where compose mounts "
                     f"./grafana/dashboards ({mounts})")
    if mounts.get("/etc/grafana/provisioning") != "./grafana/provisioning":
        probs.append("grafana: ./grafana/provisioning is not mounted at /etc/grafana/provisioning")
    exprs = dashboard_exprs(dash)
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if var.get("type") == "query" and q:
            m = re.match(r"label_values\((.*)\)", q)
            exprs.append((f"variable {var.get('name')}",
                          m.group(1) if m else q, var.get("datasource")))
    if not exprs:
        probs.append("grafana: the dashboard has no queries")
    for title, expr, dsref in exprs:
        _, eprobs = expr_metrics(expr, metrics)
        probs += [f"dashboard panel '{title}': {p}: {expr}" for p in eprobs]
        if not isinstance(dsref, dict) or dsref.get("uid") != uid:
            probs.append(f"dashboard panel '{title}': datasource {dsref} is not uid {uid}")
    for what, pred in DASHBOARD_NEEDS:
        if not any(pred(e) for _, e, _ in exprs):
            probs.append(f"dashboard: no panel shows {what}")
    return probs


# ---- Kubernetes --------------------------------------------------------------------------------


def k8s_docs():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml"))):
        for d in yaml.safe_load_all(read(path)):
            if d:
                docs.append((os.path.basename(path), d))
    return docs


def container_port(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def k8s_args(args):
    """Container args with $(VAR) expanded to a placeholder (as the kubelet would)."""
    return [re.sub(r"\$\(([A-Z_]+)\)", r"\1-value", a) for a in args]


def check_k8s(docs, uid):
    probs = []
    kinds = {}
    for f, d in docs:
        kinds.setdefault(d.get("kind"), []).append(d)
    for k in ("StatefulSet", "ConfigMap", "Service", "PodDisruptionBudget"):
        if len(kinds.get(k, [])) != 1:
            return [f"k8s: want one {k}, found {len(kinds.get(k, []))}"]
    sts, cm = kinds["StatefulSet"][0], kinds["ConfigMap"][0]
    svc, pdb = kinds["Service"][0], kinds["PodDisruptionBudget"][0]
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    cs = [c for c in spec.get("containers", []) if str(c.get("image", "")).startswith("streamseg")]
    if len(cs) != 1:
        return ["k8s: the StatefulSet has no streamseg container"]
    c = cs[0]
    conf_dir, conf_file = os.path.split(CONF_PATH)
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    cmv = vols.get(mounts.get(conf_dir), {}).get("configMap", {})
    if cmv.get("name") != cm["metadata"]["name"]:
        probs.append(f"k8s: ConfigMap {cm['metadata']['name']} is not mounted at {conf_dir}")
    text = cm.get("data", {}).get(conf_file)
    if text is None:
        return probs + [f"k8s: the ConfigMap has no key {conf_file}"]
    if c.get("command"):
        probs.append("k8s: the container overrides the image's entrypoint")
    args = k8s_args(c.get("args", []))
    probs += check_config(text, args, what="k8s ConfigMap with the container's args")
    eff = effective(text, args)
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    if mounts.get(eff["state.dir"]) not in claims:
        probs.append(f"k8s: state.dir {eff['state.dir']} is not a volumeClaimTemplate mount")
    if sts["spec"].get("replicas", 1) > 1 and not eff.get("model.topic"):
        probs.append("k8s: several replicas without model.topic (each pod would learn its own "
                     "segments)")
    if sts["spec"].get("replicas", 1) > 1 and not eff.get("state.changelog.topic"):
        probs.append("k8s: several replicas without state.changelog.topic (a moved partition "
                     "would start from an empty state)")
    host, port = listen_port(eff["http.listen"])
    if host not in ("0.0.0.0", "", "[::]", "::"):
        probs.append(f"k8s: http.listen {eff['http.listen']} is not reachable by the kubelet")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path or container_port(c, g.get("port")) != port:
            probs.append(f"k8s: {probe} asks {g.get('path')} on port "
                         f"{container_port(c, g.get('port'))}; want {path} on {port}")
    sp = c.get("startupProbe", {}).get("httpGet")
    if sp and (sp.get("path") != "/healthz" or container_port(c, sp.get("port")) != port):
        probs.append("k8s: startupProbe is not /healthz on the http.listen port")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    commit_s = int(eff["commit.interval.ms"]) / 1000
    if grace < max(60, 10 * commit_s):
        probs.append(f"k8s: terminationGracePeriodSeconds {grace} is short for a graceful stop "
                     f"(commit.interval.ms {eff['commit.interval.ms']}; want >= 60 s)")
    if sts["spec"].get("serviceName") != svc["metadata"]["name"]:
        probs.append("k8s: the StatefulSet's serviceName is not the Service")
    labels = pod["metadata"].get("labels", {})
    sel = sts["spec"]["selector"].get("matchLabels", {})
    for what, s in (("StatefulSet", sel), ("Service", svc["spec"].get("selector", {})),
                    ("PodDisruptionBudget", pdb["spec"].get("selector", {}).get("matchLabels"))):
        if not s or any(labels.get(k) != v for k, v in s.items()):
            probs.append(f"k8s: the {what} selector {s} does not match the pods' labels")
    if svc["spec"].get("clusterIP") != "None":
        probs.append("k8s: the Service is not headless (clusterIP: None)")
    sports = [container_port(c, p.get("targetPort", p.get("port")))
              for p in svc["spec"].get("ports", [])]
    if port not in sports:
        probs.append(f"k8s: no Service port targets the http.listen port {port} ({sports})")
    if not ("maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]):
        probs.append("k8s: the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
    for what, ann in (("pod", pod["metadata"].get("annotations", {})),
                      ("Service", svc["metadata"].get("annotations", {}))):
        if "prometheus.io/port" in ann and ann["prometheus.io/port"] != str(port):
            probs.append(f"k8s: {what} annotation prometheus.io/port {ann['prometheus.io/port']}"
                         f" is not the http.listen port {port}")
        if ann.get("prometheus.io/path", "/metrics") != "/metrics":
            probs.append(f"k8s: {what} annotation prometheus.io/path is not /metrics")
    sc = spec.get("securityContext", {})
    if not sc.get("runAsNonRoot") or (uid is not None and sc.get("runAsUser") != uid):
        probs.append(f"k8s: pods must run as non-root, as the image's uid {uid} ({sc})")
    if uid is not None and sc.get("fsGroup") != uid:
        probs.append(f"k8s: fsGroup {sc.get('fsGroup')} cannot write the state volume as {uid}")
    limit = c.get("resources", {}).get("limits", {}).get("memory")
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", str(limit or ""))
    cache = parse_size(eff["state.cache.max.bytes"])
    if not m or int(m.group(1)) * units[m.group(2)] <= cache:
        probs.append(f"k8s: memory limit {limit} does not exceed state.cache.max.bytes "
                     f"{eff['state.cache.max.bytes']}")
    probs += no_env_config({e["name"]: 1 for e in c.get("env", [])}, "k8s container")
    kust = [d for f, d in docs if d.get("kind") == "Kustomization"]
    files = {f for f, d in docs if d.get("kind") != "Kustomization"}
    if kust and set(kust[0].get("resources", [])) != files:
        probs.append(f"k8s: kustomization resources {kust[0].get('resources')} != {sorted(files)}")
    return probs


def parse_size(v):
    m = re.fullmatch(r"(\d+)([KMG])?B?", v.strip(), re.I)
    return int(m.group(1)) << {None: 0, "K": 10, "M": 20, "G": 30}[
        m.group(2).upper() if m.group(2) else None]


# ---- systemd ---------------------------------------------------------------------------------


def unit_sections(text):
    out, cur = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            cur = out.setdefault(s.strip("[]"), [])
        elif cur is not None:
            k, _, v = s.partition("=")
            cur.append((k.strip(), v.strip()))
    return out


HARDENING = ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
             "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
             "ProtectControlGroups=yes", "RestrictNamespaces=yes", "CapabilityBoundingSet=",
             "SystemCallArchitectures=native"]


def check_systemd(text, example, verify=True):
    probs = []
    svc = dict(unit_sections(text).get("Service", []))
    kv = unit_sections(text).get("Service", [])
    for want in ("Type=simple", "KillSignal=SIGTERM"):
        k, v = want.split("=")
        if svc.get(k) != v:
            probs.append(f"systemd: {k}={svc.get(k)}; want {v}")
    stop = seconds(svc.get("TimeoutStopSec", "90"))
    if stop is None or stop < 60:
        probs.append(f"systemd: TimeoutStopSec={svc.get('TimeoutStopSec')} is short for a "
                     f"graceful stop (want >= 60 s)")
    for h in HARDENING:
        if h not in [f"{k}={v}" for k, v in kv]:
            probs.append(f"systemd: hardening option {h} missing")
    sd = svc.get("StateDirectory")
    if not sd:
        probs.append("systemd: no StateDirectory=")
    for key in ("ExecStart", "ExecStartPre"):
        if key not in svc:
            continue
        argv = shlex.split(svc[key].lstrip("-@:+!"))
        if argv[:2] != ["/usr/bin/streamseg", "run"]:
            probs.append(f"systemd: {key} is not `/usr/bin/streamseg run`: {svc[key]}")
            continue
        if "-c" not in argv or argv[argv.index("-c") + 1] != CONF_PATH:
            probs.append(f"systemd: {key} does not read {CONF_PATH}")
        xargs = [a.replace("${STATE_DIRECTORY}", f"/var/lib/{sd}") for a in argv[2:]
                 if a != "--check-config"]
        xargs = [a for i, a in enumerate(xargs) if a != "-c" and (i == 0 or xargs[i - 1] != "-c")]
        probs += check_config(example, xargs, what=f"systemd {key} with the example config")
        eff = effective(example, xargs)
        if eff["state.dir"] != f"/var/lib/{sd}":
            probs.append(f"systemd: {key} state.dir {eff['state.dir']} is not the "
                         f"StateDirectory /var/lib/{sd}")
    env = [v for k, v in kv if k == "Environment"]
    probs += no_env_config([w for e in env for w in shlex.split(e)], "systemd")
    if verify and shutil.which("systemd-analyze"):
        # verify needs the ExecStart binary to exist: point it at the built one
        path = os.path.join(TMP, "streamseg.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("/usr/bin/streamseg", STREAMSEG))
        r = sh(["systemd-analyze", "verify", path])
        out = "\n".join(l for l in (r.stdout + r.stderr).splitlines() if "streamseg.service" in l)
        if r.returncode != 0 or out:
            probs.append(f"systemd-analyze verify: {out or r.returncode}")
    return probs


# ---- the demo generator of compose -----------------------------------------------------------


def check_gen(script_text, schema_path):
    """demo-gen.sh parses (sh -n) and registers the schema as valid JSON holding it."""
    path = os.path.join(TMP, "demo-gen.sh")
    with open(path, "w", encoding="utf-8") as f:
        f.write(script_text)
    r = sh(["sh", "-n", path])
    if r.returncode != 0:
        return [f"demo-gen.sh: sh -n: {r.stderr.strip()}"]
    r = sh(["sh", path, "--print-body"], env=dict(os.environ, SCHEMA=schema_path))
    try:
        body = json.loads(r.stdout)
        if json.loads(body["schema"]) != json.loads(read(schema_path)):
            return ["demo-gen.sh: the registered schema is not schemas/event.avsc"]
    except (ValueError, KeyError, TypeError) as e:
        return [f"demo-gen.sh: the registration body is not JSON {{\"schema\": ...}}: {e}: "
                f"{r.stdout[:80]!r} {r.stderr.strip()}"]
    return []


# ---- the run ---------------------------------------------------------------------------------

FAILURES = []


def expect_ok(name, probs):
    if probs:
        FAILURES.extend(f"{name}: {p}" for p in probs)
        print(f"FAIL {name}:\n  " + "\n  ".join(probs))
    else:
        print(f"ok   {name}")


def expect_fail(name, probs, must=None):
    """A mutated input: the check must find a problem (mentioning `must` when given)."""
    hit = [p for p in probs if must is None or must in p]
    if not hit:
        FAILURES.append(f"{name}: the check did not notice the mistake")
        print(f"FAIL {name}: not noticed (problems: {probs})")
    else:
        print(f"ok   {name}: noticed: {hit[0][:150]}")


def main():
    if not os.path.isdir(DEPLOY):
        print("deploy/ is missing")
        return 1
    # files
    texts = {p: read(p) for p in deploy_files((".yaml", ".yml", ".json"))}
    assert len(texts) >= 8, f"too few YAML/JSON files under deploy/: {sorted(texts)}"
    expect_ok("files parse", check_files(texts))
    expect_fail("files: broken YAML", check_files({"x.yaml": "a: [1,\n"}), "does not parse")
    expect_fail("files: broken JSON", check_files({"x.json": '{"a": }'}), "does not parse")

    # example config
    example = read(os.path.join(DEPLOY, "streamseg.conf.example"))
    generated = sh([STREAMSEG, "config-doc", "--conf"]).stdout
    expect_ok("example config", check_example(example, generated))
    drifted = example.replace("#segments.k=8", "#segments.k=9")
    assert drifted != example, "example: #segments.k=8 not found"
    expect_fail("example: drifted default", check_example(drifted, generated), "differs")
    expect_fail("example: bad uncommented value",
                check_example(example + "#segments.k=many\n", example + "#segments.k=many\n"),
                "--check-config")
    expect_fail("example: key missing",
                check_example(example.replace("#churn.clock=event\n", ""), generated), "missing")

    # every config file under deploy/ (the ConfigMap and compose's inline config below)
    conf_files = deploy_files((".conf", ".conf.example"))
    assert len(conf_files) >= 2, f"config files under deploy/: {conf_files}"
    for path in conf_files:
        expect_ok(f"config {rel(path)}", check_config(read(path), what=rel(path)))
    expect_fail("config: unknown key", check_config("input.topic=a\nsegments.kk=3\n"),
                "segments.kk")

    # -X keys everywhere
    xtexts = {rel(p): read(p) for p in deploy_files(("",)) if not p.endswith(".json")}
    xtexts["README.md (run/inspect commands)"] = readme_commands(read(os.path.join(SRC,
                                                                                   "README.md")))
    nkeys = sum(len(xkeys_in(t)) for t in xtexts.values())
    assert nkeys >= 5, f"only {nkeys} -X arguments found: the scanner is broken"
    expect_ok(f"-X keys ({nkeys})", check_xkeys(xtexts))
    expect_fail("-X: unknown key", check_xkeys({"m": 'args: ["-X", "segments.kk=3"]'}),
                "segments.kk")
    expect_fail("-X: unknown librdkafka key", check_xkeys({"m": "run -X kafka.no.such=1"}),
                "kafka.no.such")
    expect_fail("-X: README command", check_xkeys({"m": readme_commands(
        "build/streamseg run -X kafka.group.id=g \\\n   -X state.dirr=/x\n")}), "state.dirr")

    # Dockerfile
    dockerfile = read(os.path.join(DEPLOY, "Dockerfile"))
    blist = build_pkgs(read(os.path.join(SRC, "tools", "build.sh")))
    needed = needed_packages()
    print(f"     binary needs: {needed}")
    known = apt_known()
    if known:
        stages = dockerfile_stages(dockerfile)
        known.prefetch(sorted({p for _, instrs in stages for p in apt_installs(instrs)}))
    print("     apt lists: " + ("package names checked with apt-cache" if known else
                                "none here, package names checked through dpkg -S only"))
    ignore = read(os.path.join(DEPLOY, "Dockerfile.dockerignore"))
    expect_ok("Dockerfile", check_dockerfile(dockerfile, blist, needed, known, ignore))
    expect_fail("Dockerfile: COPY source ignored", check_dockerfile(
        dockerfile, blist, needed, None, ignore.replace("!schemas/\n", "")), "schemas")
    if known:
        expect_fail("Dockerfile: a package name that bookworm lacks", check_dockerfile(
            dockerfile.replace(" libavro23 ", " libavro24 "), blist, needed, known), "libavro24")
    expect_fail("Dockerfile: build.sh gains a package",
                check_dockerfile(dockerfile, blist + ["libzstd-dev"], needed), "libzstd-dev")
    expect_fail("Dockerfile: runtime lacks a library",
                check_dockerfile(dockerfile.replace(" librocksdb7.8 ", " "), blist, needed),
                "librocksdb")
    expect_fail("Dockerfile: a source directory not copied",
                check_dockerfile(dockerfile.replace("COPY cmake/ cmake/\n", ""), blist, needed),
                "reads cmake")
    expect_fail("Dockerfile: runtime has an unneeded package",
                check_dockerfile(dockerfile.replace(" zlib1g ", " zlib1g libsqlite3-0 "), blist,
                                 needed), "libsqlite3-0")
    expect_fail("Dockerfile: runs as root",
                check_dockerfile(dockerfile.replace("USER 10001:10001", "USER root"), blist,
                                 needed), "root")
    expect_fail("Dockerfile: healthcheck port",
                check_dockerfile(dockerfile.replace("127.0.0.1:8080/healthz",
                                                    "127.0.0.1:8081/healthz"), blist, needed),
                "HEALTHCHECK")
    expect_fail("Dockerfile: no state volume",
                check_dockerfile(dockerfile.replace('VOLUME ["/var/lib/streamseg"]',
                                                    'VOLUME ["/data"]'), blist, needed), "VOLUME")
    uid = image_uid(dockerfile)

    # compose
    compose = yaml.safe_load(read(os.path.join(DEPLOY, "compose.yaml")))
    expect_ok("compose", check_compose(compose))
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["command"] = ["-X", "kafka.group.id=other"]
    expect_fail("compose: two groups", check_compose(bad), "consumer groups")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["command"] = ["-X", "segments.kk=3"]
    expect_fail("compose: unknown key", check_compose(bad), "segments.kk")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["volumes"] = list(bad["services"]["streamseg-1"]["volumes"])
    expect_fail("compose: shared state volume", check_compose(bad), "share a state volume")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["ports"] = list(bad["services"]["streamseg-1"]["ports"])
    expect_fail("compose: same host port", check_compose(bad), "same host port")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["hostname"] = "streamseg-1"
    expect_fail("compose: same host name", check_compose(bad), "host names")
    bad = copy.deepcopy(compose)
    bad["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] = "broker"
    expect_fail("compose: not KRaft combined", check_compose(bad), "KRaft")
    bad = copy.deepcopy(compose)
    bad["services"]["kafka-init"]["command"] = [
        c.replace("--config cleanup.policy=compact", "") for c in
        bad["services"]["kafka-init"]["command"]]
    expect_fail("compose: profiles not compacted", check_compose(bad), "compacted")
    bad = copy.deepcopy(compose)
    bad["services"]["kafka-init"]["command"] = [
        c.replace("t streamseg.changelog --partitions 6", "t streamseg.changelog --partitions 3")
        for c in bad["services"]["kafka-init"]["command"]]
    expect_fail("compose: changelog partitions", check_compose(bad), "fewer partitions")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["command"] = ["-X", "state.changelog.topic="]
    expect_fail("compose: no changelog", check_compose(bad), "state.changelog.topic")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-2"]["command"] = ["-X", "erasure.topic=gdpr.requests"]
    expect_fail("compose: a topic not created", check_compose(bad), "gdpr.requests")
    bad = copy.deepcopy(compose)
    bad["services"]["streamseg-1"]["environment"] = {"STREAMSEG_INPUT_TOPIC": "x"}
    expect_fail("compose: env-mapped key", check_compose(bad), "STREAMSEG_INPUT_TOPIC")
    bad = copy.deepcopy(compose)
    for c in bad["configs"].values():
        c["content"] = c["content"].replace("kafka:9092", "broker:9092")
    expect_fail("compose: bootstrap not a service", check_compose(bad), "bootstrap")

    gen_path = os.path.join(DEPLOY, "demo-gen.sh")
    gen = read(gen_path)
    schema = os.path.join(SRC, "schemas", "event.avsc")
    expect_ok("compose demo generator", check_gen(gen, schema))
    tricky = os.path.join(TMP, "tricky.avsc")
    with open(tricky, "w", encoding="utf-8") as f:
        f.write('{"type": "record", "name": "T", "doc": "a \\"quoted\\" back\\\\slash\\ttab",\n'
                ' "fields": [{"name": "x", "type": "long"}]}\n')
    json.loads(read(tricky))
    expect_ok("compose demo generator: quotes, backslashes, tabs", check_gen(gen, tricky))
    expect_fail("compose demo generator: no escaping",
                check_gen(gen.replace("-e 's/\"/\\\\\"/g'", ""), schema), "not JSON")
    gsvc = compose["services"].get("gen", {})
    if "./demo-gen.sh:" + gsvc.get("entrypoint", ["", ""])[-1] not in " ".join(
            gsvc.get("volumes", [])) + ":":
        FAILURES.append("compose gen: demo-gen.sh is not mounted where the entrypoint runs it")
        print("FAIL compose gen: demo-gen.sh mount")

    # Prometheus
    prom = yaml.safe_load(read(os.path.join(DEPLOY, "prometheus", "prometheus.yml")))
    expect_ok("prometheus", check_prometheus(prom, compose))
    bad = copy.deepcopy(prom)
    bad["scrape_configs"][0]["static_configs"][0]["targets"] = ["streamseg-1:8080",
                                                                "streamseg-2:9999"]
    expect_fail("prometheus: wrong port", check_prometheus(bad, compose), "targets")
    bad = copy.deepcopy(compose)
    for c in bad["configs"].values():
        c["content"] = c["content"].replace("http.listen=0.0.0.0:8080", "http.listen=0.0.0.0:8181")
    expect_fail("prometheus: http.listen moved", check_prometheus(prom, bad))

    # Grafana
    metrics = load_metrics(read(os.path.join(SRC, "METRICS.md")))
    assert len(metrics) >= 20 and metrics.get("streamseg_commit_cycle_seconds", ({}, ""))[1] == \
        "histogram", f"METRICS.md: unexpected table ({len(metrics)} metrics)"
    print(f"     metric names from METRICS.md: {len(metrics)}")
    dash = json.loads(read(os.path.join(DEPLOY, "grafana", "dashboards", "streamseg.json")))
    ds_prov = yaml.safe_load(read(os.path.join(DEPLOY, "grafana", "provisioning", "datasources",
                                               "prometheus.yaml")))
    dash_prov = yaml.safe_load(read(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards",
                                                 "streamseg.yaml")))
    expect_ok(f"grafana ({len(dashboard_exprs(dash))} queries)",
              check_grafana(dash, ds_prov, dash_prov, compose, metrics))
    bad = copy.deepcopy(dash)
    bad["panels"][-1]["targets"][0]["expr"] = "rate(streamseg_bogus_total[5m])"
    expect_fail("grafana: unknown metric", check_grafana(bad, ds_prov, dash_prov, compose,
                                                         metrics), "streamseg_bogus_total")
    bad = copy.deepcopy(dash)
    bad["panels"][-1]["targets"][0]["expr"] = \
        "sum by (partition) (rate(streamseg_dead_letters_total[5m]))"
    expect_fail("grafana: wrong label", check_grafana(bad, ds_prov, dash_prov, compose, metrics),
                "label partition")
    bad = copy.deepcopy(dash)
    for p in bad["panels"]:
        for t in p.get("targets", []):
            t["expr"] = t["expr"].replace("histogram_quantile(0.99", "histogram_quantile(0.9")
    expect_fail("grafana: no p99", check_grafana(bad, ds_prov, dash_prov, compose, metrics),
                "commit cycle p99")
    bad = copy.deepcopy(ds_prov)
    bad["datasources"][0]["uid"] = "other"
    expect_fail("grafana: datasource uid", check_grafana(dash, bad, dash_prov, compose, metrics),
                "datasource")
    bad = copy.deepcopy(dash_prov)
    bad["providers"][0]["options"]["path"] = "/dashboards"
    expect_fail("grafana: provider path", check_grafana(dash, ds_prov, bad, compose, metrics),
                "provider")

    # Kubernetes
    docs = k8s_docs()
    expect_ok(f"k8s ({len(docs)} objects)", check_k8s(docs, uid))

    def mutate(fn):
        d = copy.deepcopy(docs)
        for _, doc in d:
            fn(doc)
        return d

    def sts_container(doc):
        return doc["spec"]["template"]["spec"]["containers"][0] \
            if doc.get("kind") == "StatefulSet" else None

    def set_probe(doc, probe, key, value):
        c = sts_container(doc)
        if c:
            c[probe]["httpGet"][key] = value

    expect_fail("k8s: readiness path", check_k8s(mutate(
        lambda d: set_probe(d, "readinessProbe", "path", "/ready")), uid), "readinessProbe")
    expect_fail("k8s: liveness port", check_k8s(mutate(
        lambda d: set_probe(d, "livenessProbe", "port", 8081)), uid), "livenessProbe")

    def move_listen(d):
        if d.get("kind") == "ConfigMap":
            d["data"]["streamseg.conf"] = d["data"]["streamseg.conf"].replace(
                "http.listen=0.0.0.0:8080", "http.listen=0.0.0.0:9000")
    expect_fail("k8s: http.listen moved", check_k8s(mutate(move_listen), uid), "port")

    def bad_key(d):
        if d.get("kind") == "ConfigMap":
            d["data"]["streamseg.conf"] += "segments.kk=3\n"
    expect_fail("k8s: unknown key in the ConfigMap", check_k8s(mutate(bad_key), uid),
                "segments.kk")

    def short_grace(d):
        if d.get("kind") == "StatefulSet":
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5
    expect_fail("k8s: short grace period", check_k8s(mutate(short_grace), uid),
                "terminationGracePeriodSeconds")

    def state_elsewhere(d):
        if d.get("kind") == "ConfigMap":
            d["data"]["streamseg.conf"] = d["data"]["streamseg.conf"].replace(
                "state.dir=/var/lib/streamseg", "state.dir=/tmp/state")
    expect_fail("k8s: state.dir not on the volume", check_k8s(mutate(state_elsewhere), uid),
                "volumeClaimTemplate")

    def no_changelog(d):
        if d.get("kind") == "ConfigMap":
            d["data"]["streamseg.conf"] = d["data"]["streamseg.conf"].replace(
                "state.changelog.topic=streamseg.changelog", "")
    expect_fail("k8s: replicas without a changelog", check_k8s(mutate(no_changelog), uid),
                "changelog")

    def pdb_selector(d):
        if d.get("kind") == "PodDisruptionBudget":
            d["spec"]["selector"]["matchLabels"] = {"app": "other"}
    expect_fail("k8s: PDB selector", check_k8s(mutate(pdb_selector), uid),
                "PodDisruptionBudget selector")

    def bad_arg(d):
        c = sts_container(d)
        if c:
            c["args"] = ["-X", "kafka.no.such=$(POD_NAME)"]
    expect_fail("k8s: unknown -X in args", check_k8s(mutate(bad_arg), uid), "kafka.no.such")

    # systemd
    unit = read(os.path.join(DEPLOY, "systemd", "streamseg.service"))
    expect_ok("systemd", check_systemd(unit, example))
    expect_fail("systemd: KillSignal", check_systemd(
        unit.replace("KillSignal=SIGTERM", "KillSignal=SIGKILL"), example, False), "KillSignal")
    expect_fail("systemd: state.dir", check_systemd(
        unit.replace("state.dir=${STATE_DIRECTORY}", "state.dir=/srv/streamseg"), example,
        False), "StateDirectory")
    expect_fail("systemd: hardening", check_systemd(
        unit.replace("ProtectSystem=strict", "ProtectSystem=full"), example, False),
        "ProtectSystem")
    if shutil.which("systemd-analyze"):
        expect_fail("systemd: systemd-analyze verify", check_systemd(
            unit.replace("[Service]", "[Service]\nNoSuchOption=1"), example), "verify")

    if FAILURES:
        print(f"\n{len(FAILURES)} problem(s)")
        return 1
    print("\nall deploy checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
