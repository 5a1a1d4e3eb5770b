#!/usr/bin/env bash
# Test bed for modelcast's integration tests: a real Apache Kafka broker (4.4.0,
# KRaft, jars from Maven Central) and real S3 servers (garage and s3s-fs), all
# on 127.0.0.1 with ports picked at start, so several test beds can run at once.
#
# Usage:
#   scripts/services.sh install       fetch and build the pinned servers into the cache
#   scripts/services.sh start DIR     start them with data, logs and env.sh in DIR
#   scripts/services.sh stop DIR      stop the servers started in DIR
#   scripts/services.sh run CMD...    install, start in a temporary dir, run CMD
#                                     with env.sh sourced, stop, clean up
#
# Environment:
#   MODELCAST_CACHE             where servers are installed
#                               (default: ${XDG_CACHE_HOME:-$HOME/.cache}/modelcast)
#   MODELCAST_S3S_FS=0          neither install nor start s3s-fs
#   MODELCAST_GARAGE=0          neither install nor start garage (env.sh then has
#                               no MODELCAST_TEST_S3_*: the S3 tests skip or fail)
#   MODELCAST_JAVA              the java that runs Kafka, 17 or newer
#                               (default: java on PATH)
#   MODELCAST_SERVICES_TIMEOUT  seconds to wait for each server (default: 60)
#   MODELCAST_SERVICES_RUST_LOG RUST_LOG for the servers (default: unset)
#   MODELCAST_CHROMIUM=0        do not install Chromium (the report test skips)
#   MODELCAST_EXPORT_CHECKS=0   do not install the export checkers (onnxruntime and
#                               pypmml in a venv, a Java runtime, tract-check); the
#                               export parity test skips
#
# The broker is one JVM (broker and controller, node 1) with a PLAINTEXT
# listener and a SASL_SSL one on Kafka's own TLS (a CA and a certificate for
# localhost made here by openssl; PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for
# one user): the Confluent Cloud shape, on localhost. Install needs java (17+),
# mvn and, for garage and s3s-fs, cargo.
set -euo pipefail

readonly KAFKA_VERSION=4.4.0
readonly GARAGE_VERSION=2.5.0
readonly S3S_FS_VERSION=0.14.1

readonly S3_BUCKET=modelcast-test
readonly GARAGE_REGION=garage
readonly S3S_REGION=us-east-1

MODELCAST_CACHE="${MODELCAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelcast}"
READY_TIMEOUT="${MODELCAST_SERVICES_TIMEOUT:-60}"
WITH_S3S_FS="${MODELCAST_S3S_FS:-1}"
WITH_GARAGE="${MODELCAST_GARAGE:-1}"
WITH_CHROMIUM="${MODELCAST_CHROMIUM:-1}"
WITH_EXPORT_CHECKS="${MODELCAST_EXPORT_CHECKS:-1}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly EXPORT_VENV_REQ="$REPO_ROOT/scripts/requirements-export.txt"
readonly TRACT_CHECK="$REPO_ROOT/tools/tract-check"
readonly KAFKA_POM="$REPO_ROOT/scripts/kafka/pom.xml"
readonly KAFKA_LOG4J="$REPO_ROOT/scripts/kafka/log4j2.properties"
# The broker's JVM: a bounded heap, the serial collector (one small broker on a
# 2-core machine), no hsperfdata file in /tmp.
readonly KAFKA_JVM_OPTS=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:-UsePerfData
	-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)

log() { printf 'services: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
	exit "${1:-2}"
}

# bin_path NAME VERSION: where `cargo install --root` puts NAME's binary.
bin_path() { printf '%s/%s-%s/bin/%s' "$MODELCAST_CACHE" "$1" "$2" "$1"; }

# random_hex BYTES: 2*BYTES lowercase hex digits from /dev/urandom.
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# free_ports N: N distinct TCP ports that are free on 127.0.0.1 right now.
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# now_ms: milliseconds since the epoch.
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	printf '%s' "${t:0:-3}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# alive PID: PID exists and is not a zombie.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# ---------------------------------------------------------------- install

# install_one NAME VERSION [CARGO_ARGS...]: cargo install NAME@VERSION into
# $MODELCAST_CACHE/NAME-VERSION unless it is there. A lock file keeps two
# test beds installing at once from sharing a build directory.
install_one() {
	local name=$1 version=$2
	shift 2
	local root="$MODELCAST_CACHE/$name-$version"
	local target="$MODELCAST_CACHE/build/$name-$version"
	local lock_fd status=0
	exec {lock_fd}>"$MODELCAST_CACHE/.$name-$version.lock"
	if ! flock -n "$lock_fd"; then
		log "$name $version: waiting for another install to finish..."
		flock "$lock_fd"
	fi
	if [[ -x $root/bin/$name ]]; then
		log "$name $version: installed at $root/bin/$name"
	else
		log "$name $version: building with cargo install (several minutes)..."
		local start=$SECONDS
		cargo install --root "$root" --target-dir "$target" --locked "$@" "$name@$version" ||
			status=$?
		# The build directory is large (up to 1.5 GB): never keep it.
		rm -rf "$target"
		rmdir "$MODELCAST_CACHE/build" 2>/dev/null || true
		if ((status == 0)); then
			log "$name $version: installed in $((SECONDS - start)) s"
		fi
	fi
	exec {lock_fd}>&-
	return "$status"
}

# kafka_root: where install_kafka puts Kafka (libs/ holds the jars).
kafka_root() { printf '%s/kafka-%s' "$MODELCAST_CACHE" "$KAFKA_VERSION"; }

# kafka_java: the path of the java that runs Kafka; fails unless it is 17 or newer.
kafka_java() {
	local java version
	java=$(command -v "${MODELCAST_JAVA:-java}") || {
		log "java is missing: Kafka $KAFKA_VERSION needs Java 17 or newer (apt-get install openjdk-17-jre-headless)"
		return 1
	}
	version=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
	if [[ ! $version =~ ^[0-9]+$ ]] || ((version < 17)); then
		log "$java is Java ${version:-of unknown version}: Kafka $KAFKA_VERSION needs 17 or newer (MODELCAST_JAVA)"
		return 1
	fi
	printf '%s' "$java"
}

# install_kafka: the jars of scripts/kafka/pom.xml (Kafka, its command-line
# tools and their runtime dependencies, pinned, from Maven Central) into
# $(kafka_root)/libs, unless they are there for this pom (its digest is kept in
# $(kafka_root)/pom.sha256: a changed pom replaces an existing install). mvn
# resolves them into a temporary directory, with a Maven repository of its own
# that is deleted afterwards, which is then renamed into place; a lock keeps
# two installs from racing, as in install_one.
install_kafka() {
	local root stamp lock_fd status=0
	root=$(kafka_root)
	stamp=$(hash_of "$KAFKA_POM")
	exec {lock_fd}>"$MODELCAST_CACHE/.kafka-$KAFKA_VERSION.lock"
	if ! flock -n "$lock_fd"; then
		log "kafka $KAFKA_VERSION: waiting for another install to finish..."
		flock "$lock_fd"
	fi
	if [[ -e $root/pom.sha256 && $(<"$root/pom.sha256") == "$stamp" ]]; then
		log "kafka $KAFKA_VERSION: installed at $root/libs"
	else
		log "kafka $KAFKA_VERSION: fetching the broker's jars from Maven Central..."
		local tmp start=$SECONDS
		tmp=$(mktemp -d "$MODELCAST_CACHE/.kafka-$KAFKA_VERSION.XXXXXX")
		if mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" -Dmaven.repo.local="$tmp/m2" \
			dependency:copy-dependencies -DoutputDirectory="$tmp/kafka/libs" >"$tmp/mvn.log" 2>&1 &&
			[[ -e $tmp/kafka/libs/kafka_2.13-$KAFKA_VERSION.jar ]]; then
			printf '%s\n' "$stamp" >"$tmp/kafka/pom.sha256"
			# an install for an older pom, if any, is renamed away (deleted with
			# $tmp) just before the new one takes its place, so the libs dir is
			# missing only between two renames; a running broker keeps the jars
			# it opened
			if [[ -e $root ]]; then mv "$root" "$tmp/old"; fi
			mv "$tmp/kafka" "$root"
			log "kafka $KAFKA_VERSION: installed in $((SECONDS - start)) s ($(du -sh "$root/libs" | cut -f1) of jars)"
		else
			status=1
			log "kafka $KAFKA_VERSION: mvn failed; the end of its output:"
			tail -n 30 "$tmp/mvn.log" >&2 || true
		fi
		rm -rf "$tmp"
	fi
	exec {lock_fd}>&-
	return "$status"
}

# apt_install COMMAND PACKAGE WHY: install a Debian package when COMMAND is
# missing (as root), else say in one line how to.
apt_install() {
	local cmd=$1 pkg=$2 why=$3
	command -v "$cmd" >/dev/null && return 0
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "$pkg: installing the Debian package (for $why)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 ||
			(apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1) ||
			log "warning: could not install $pkg; $why need it (apt-get install $pkg)"
	else
		log "warning: $cmd is missing; $why need it: sudo apt-get install $pkg"
	fi
}

# hash_of FILE...: a short digest of files (cache keys).
hash_of() {
	cat "$@" | sha256sum | cut -c1-16
}

export_venv() { printf '%s/export-venv-%s' "$MODELCAST_CACHE" "$(hash_of "$EXPORT_VENV_REQ")"; }
tract_check_root() {
	printf '%s/tract-check-%s' "$MODELCAST_CACHE" \
		"$(hash_of "$TRACT_CHECK/Cargo.toml" "$TRACT_CHECK/Cargo.lock" "$TRACT_CHECK/src/main.rs")"
}

# The export parity test's checkers: onnxruntime and pypmml (pinned, in a venv
# keyed by its requirements file), a Java runtime for pypmml, and tract-check
# (tract-onnx, built once per version of tools/tract-check).
install_export_checks() {
	local lock_fd venv root
	exec {lock_fd}>"$MODELCAST_CACHE/.export-checks.lock"
	flock "$lock_fd"
	apt_install java openjdk-17-jre-headless "pypmml (the PMML export parity test)"
	venv=$(export_venv)
	if [[ ! -x $venv/bin/python ]]; then
		log "export checkers: making $venv (onnxruntime, pypmml, tritonclient, kserve)"
		local python=python3 start=$SECONDS
		command -v python3.11 >/dev/null && python=python3.11
		if "$python" -m venv "$venv.tmp" &&
			"$venv.tmp/bin/python" -m pip install --quiet --disable-pip-version-check -r "$EXPORT_VENV_REQ"; then
			mv "$venv.tmp" "$venv"
			log "export venv: made in $((SECONDS - start)) s"
		else
			rm -rf "$venv.tmp"
			log "warning: could not make the export venv; the export parity test will skip"
		fi
	fi
	root=$(tract_check_root)
	if [[ ! -x $root/bin/tract-check ]]; then
		log "export checkers: building tract-check (tract-onnx; a few minutes, once)..."
		local start=$SECONDS
		if cargo install --quiet --locked --root "$root" --target-dir "$MODELCAST_CACHE/build/tract-check" \
			--path "$TRACT_CHECK"; then
			log "tract-check: installed in $((SECONDS - start)) s"
		else
			log "warning: could not build tract-check; the export test skips tract"
		fi
		rm -rf "$MODELCAST_CACHE/build/tract-check"
		rmdir "$MODELCAST_CACHE/build" 2>/dev/null || true
	fi
	exec {lock_fd}>&-
}

cmd_install() {
	command -v flock >/dev/null || die "flock (util-linux) is needed to install the servers"
	if [[ $WITH_GARAGE != 0 || $WITH_S3S_FS != 0 ]]; then
		command -v cargo >/dev/null || die "cargo is needed to install the S3 servers"
	fi
	mkdir -p "$MODELCAST_CACHE"
	# Kafka: jars from Maven Central, run by a Java 17+ (openssl makes the test
	# certificate of its SASL_SSL listener at start)
	[[ -n ${MODELCAST_JAVA:-} ]] || apt_install java openjdk-17-jre-headless "the Kafka broker"
	apt_install mvn maven "installing the Kafka broker"
	apt_install openssl openssl "the Kafka broker's SASL_SSL listener"
	kafka_java >/dev/null || die "no Java 17 or newer to run Kafka $KAFKA_VERSION"
	command -v mvn >/dev/null || die "mvn (Maven) is needed to install Kafka $KAFKA_VERSION"
	install_kafka || die "could not install Kafka $KAFKA_VERSION"
	if [[ $WITH_GARAGE == 0 ]]; then
		log "garage: skipped (MODELCAST_GARAGE=0)"
	else
		install_one garage "$GARAGE_VERSION" ||
			die "could not install garage $GARAGE_VERSION"
	fi
	# headless Chromium renders the training report in its test
	if [[ $WITH_CHROMIUM != 0 ]]; then
		apt_install chromium chromium "the training report's rendering test"
	fi
	if [[ $WITH_EXPORT_CHECKS != 0 ]]; then
		install_export_checks
	fi
	if [[ $WITH_S3S_FS == 0 ]]; then
		log "s3s-fs: skipped (MODELCAST_S3S_FS=0)"
	else
		install_one s3s-fs "$S3S_FS_VERSION" --features binary ||
			die "could not install s3s-fs $S3S_FS_VERSION (MODELCAST_S3S_FS=0 goes without it)"
	fi
}

# ---------------------------------------------------------------- start

# wait_ready DIR NAME PID CHECK...: wait until CHECK succeeds; on failure
# show NAME's log tail, stop everything started in DIR and exit.
wait_ready() {
	local dir=$1 name=$2 pid=$3
	shift 3
	local start deadline
	start=$(now_ms)
	deadline=$((start + READY_TIMEOUT * 1000))
	until "$@"; do
		local problem=""
		if ! alive "$pid"; then
			problem="exited before it was ready"
		elif (($(now_ms) > deadline)); then
			problem="not ready after $READY_TIMEOUT s"
		fi
		if [[ -n $problem ]]; then
			log "$name $problem; last lines of $dir/$name.log:"
			tail -n 40 "$dir/$name.log" >&2 || true
			cmd_stop "$dir"
			exit 1
		fi
		sleep 0.05
	done
	log "$name ready in $(($(now_ms) - start)) ms (pid $pid, log $dir/$name.log)"
}

# spawn DIR NAME WORKDIR CMD...: run CMD in WORKDIR in the background with
# output to DIR/NAME.log; record its pid in DIR/NAME.pid and in $SPAWNED_PID.
spawn() {
	local dir=$1 name=$2 workdir=$3
	shift 3
	# The servers log at their default level whatever RUST_LOG the caller
	# set for the tests, unless MODELCAST_SERVICES_RUST_LOG says otherwise.
	local log_env=(-u RUST_LOG)
	if [[ -n ${MODELCAST_SERVICES_RUST_LOG:-} ]]; then
		log_env=("RUST_LOG=$MODELCAST_SERVICES_RUST_LOG")
	fi
	(cd "$workdir" && exec env "${log_env[@]}" "$@") </dev/null >>"$dir/$name.log" 2>&1 &
	SPAWNED_PID=$!
	printf '%s %s\n' "$SPAWNED_PID" "$name" >"$dir/$name.pid"
}

# make_tls DIR: a test CA and a certificate for localhost / 127.0.0.1 signed by
# it, in DIR/tls (ca.pem, broker.pem, broker.key); valid for 2 days.
make_tls() {
	local tls=$1/tls
	[[ -e $tls/broker.pem ]] && return 0
	mkdir -p "$tls"
	(
		cd "$tls"
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
			-subj "/CN=modelcast test CA" 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr \
			-subj "/CN=localhost" 2>/dev/null
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf
		openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out broker.pem -days 2 -extfile ext.cnf 2>/dev/null
		chmod 644 ca.pem
	)
}

# kafka_cluster_id: a random Kafka cluster id (16 bytes, URL-safe base64,
# unpadded). One id in 64 would start with '-', which Kafka's storage tool reads
# as an option ("argument --cluster-id/-t: expected one argument"), so the first
# character is drawn again until it is not.
kafka_cluster_id() {
	local id
	while id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); [[ $id == -* ]]; do :; done
	printf '%s' "$id"
}

# kafka_ready PORT SASL_PORT: the broker answers a Metadata request on PORT with
# itself in it (it has joined its own KRaft quorum and is unfenced), and
# SASL_PORT accepts TCP. Kafka binds its listeners a few seconds before it
# serves them, so an open port alone says little; the request, queued until
# then, is answered as soon as the broker serves.
kafka_ready() {
	port_open "$1" && port_open "$2" || return 1
	python3 - "$1" <<'EOF'
import socket, struct, sys
client = b"modelcast-services"
# Metadata v4 (the oldest Kafka 4 serves): header v1, no topics, no auto-creation
req = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", 0, 0)
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit(1)
            buf += chunk
except OSError:
    sys.exit(1)
# correlation id, throttle time, number of brokers
correlation, _, brokers = struct.unpack(">iii", buf[4:16])
sys.exit(0 if correlation == 7 and brokers >= 1 else 1)
EOF
}

# start_kafka DIR PORT SASL_PORT CONTROLLER_PORT: Apache Kafka in KRaft mode,
# one JVM as broker and controller (node 1, a static quorum of itself on
# CONTROLLER_PORT), data in DIR/kafka/data, log in DIR/kafka.log. Listeners, all
# on 127.0.0.1: PLAINTEXT on PORT (also the inter-broker listener), SASL_SSL on
# SASL_PORT with Kafka's own TLS and the certificate of make_tls, advertised as
# localhost:SASL_PORT (the name in the certificate), where SASL_USER with
# SASL_PASSWORD logs in with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, and the
# controller's (plaintext) on CONTROLLER_PORT.
# The storage is formatted (with the SCRAM credentials) on the first start in
# DIR; later starts keep data and users and only rewrite server.properties.
# The broker runs as `java ... kafka.Kafka DIR/kafka/server.properties` in
# DIR/kafka, so the same command line starts it again on the same ports and data.
start_kafka() {
	local dir=$1 port=$2 sasl_port=$3 controller_port=$4
	local kdir=$dir/kafka java libs
	java=$(kafka_java) || die "cannot run Kafka"
	libs="$(kafka_root)/libs"
	mkdir -p "$kdir"
	make_tls "$dir"
	(
		umask 077
		# Kafka's PEM key store: the private key (PKCS#8, the only unencrypted
		# form Kafka reads) followed by the certificate
		openssl pkcs8 -topk8 -nocrypt -in "$dir/tls/broker.key" -out "$kdir/broker-keystore.pem"
		cat "$dir/tls/broker.pem" >>"$kdir/broker-keystore.pem"
		cp "$KAFKA_LOG4J" "$kdir/log4j2.properties"
		cat >"$kdir/server.properties" <<EOF
# modelcast test bed (scripts/services.sh start $dir)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://localhost:$sasl_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$kdir/data

auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# the tests produce records of 4 MB and more (Kafka's default limit is 1 MB)
message.max.bytes=20971520

sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$kdir/broker-keystore.pem
EOF
	)
	# The JVM ignores the caller's options: the broker starts the same for all.
	local jvm=(env -u JAVA_TOOL_OPTIONS -u JDK_JAVA_OPTIONS -u _JAVA_OPTIONS "$java"
		"${KAFKA_JVM_OPTS[@]}" "-Dlog4j2.configurationFile=$kdir/log4j2.properties" -cp "$libs/*")
	if [[ ! -e $kdir/data/meta.properties ]]; then
		local start
		start=$(now_ms)
		(cd "$kdir" && "${jvm[@]}" -Xms32m -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format \
			--config "$kdir/server.properties" --cluster-id "$(kafka_cluster_id)" \
			--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" \
			--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]") \
			</dev/null >>"$dir/kafka.log" 2>&1 || {
			tail -n 20 "$dir/kafka.log" | sed 's/^/services: kafka.log: /' >&2
			die "could not format Kafka's storage in $kdir/data; see $dir/kafka.log"
		}
		log "kafka storage formatted in $(($(now_ms) - start)) ms"
	fi
	spawn "$dir" kafka "$kdir" "${jvm[@]}" kafka.Kafka "$kdir/server.properties"
	KAFKA_PID=$SPAWNED_PID
	wait_ready "$dir" kafka "$KAFKA_PID" kafka_ready "$port" "$sasl_port"
}

start_garage() {
	local dir=$1 s3_port=$2 rpc_port=$3 admin_port=$4
	local bin
	bin=$(bin_path garage "$GARAGE_VERSION")
	mkdir -p "$dir/garage/meta" "$dir/garage/data"
	(
		umask 077
		cat >"$dir/garage/garage.toml" <<EOF
metadata_dir = "$dir/garage/meta"
data_dir = "$dir/garage/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "$GARAGE_REGION"
api_bind_addr = "127.0.0.1:$s3_port"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
EOF
	)
	# --single-node lays out a one-node cluster; --default-access-key and
	# --default-bucket create the key and bucket named in GARAGE_DEFAULT_*.
	spawn "$dir" garage "$dir/garage" \
		env GARAGE_DEFAULT_ACCESS_KEY="$GARAGE_ACCESS_KEY" \
		GARAGE_DEFAULT_SECRET_KEY="$GARAGE_SECRET_KEY" \
		GARAGE_DEFAULT_BUCKET="$S3_BUCKET" \
		"$bin" -c "$dir/garage/garage.toml" server \
		--single-node --default-access-key --default-bucket
	GARAGE_PID=$SPAWNED_PID
	wait_ready "$dir" garage "$GARAGE_PID" garage_ready "$admin_port" "$s3_port"
}

# garage_ready ADMIN_PORT S3_PORT: /health answers 200 once the layout, key
# and bucket are set up; the S3 listener is spawned just before it.
garage_ready() {
	http_ok "http://127.0.0.1:$1/health" && port_open "$2"
}

start_s3s_fs() {
	local dir=$1 port=$2
	local bin
	bin=$(bin_path s3s-fs "$S3S_FS_VERSION")
	# s3s-fs serves each directory under its root as a bucket.
	mkdir -p "$dir/s3s-fs/$S3_BUCKET"
	spawn "$dir" s3s-fs "$dir/s3s-fs" \
		"$bin" --host 127.0.0.1 --port "$port" \
		--access-key "$S3S_ACCESS_KEY" --secret-key "$S3S_SECRET_KEY" \
		"$dir/s3s-fs"
	S3S_PID=$SPAWNED_PID
	wait_ready "$dir" s3s-fs "$S3S_PID" port_open "$port"
}

# load_secrets DIR: keys and secrets of the test bed in DIR, made on its first
# start and kept in DIR/secrets.sh: garage refuses to start again on its data
# with a default access key whose secret has changed.
load_secrets() {
	local file="$1/secrets.sh"
	if [[ ! -e $file ]]; then
		(
			umask 077
			printf '%s=%s\n' \
				GARAGE_RPC_SECRET "$(random_hex 32)" \
				GARAGE_ACCESS_KEY "GK$(random_hex 12)" \
				GARAGE_SECRET_KEY "$(random_hex 32)" \
				S3S_ACCESS_KEY "AK$(random_hex 10)" \
				S3S_SECRET_KEY "$(random_hex 32)" \
				SASL_USER "modelcast-$(random_hex 3)" \
				SASL_PASSWORD "$(random_hex 16)" >"$file"
		)
	fi
	# shellcheck source=/dev/null
	source "$file"
}

cmd_start() {
	(($# == 1)) || usage
	mkdir -p "$1"
	local dir
	dir=$(cd "$1" && pwd)
	command -v python3 >/dev/null || die "python3 is needed to pick free ports"
	command -v openssl >/dev/null || die "openssl is needed for the SASL_SSL listener's certificate"
	[[ -e $(kafka_root)/libs/kafka_2.13-$KAFKA_VERSION.jar ]] ||
		die "Kafka $KAFKA_VERSION not installed: run $0 install"
	if [[ $WITH_GARAGE != 0 ]]; then
		command -v curl >/dev/null || die "curl is needed to check that garage is ready"
		[[ -x $(bin_path garage "$GARAGE_VERSION") ]] ||
			die "garage $GARAGE_VERSION not installed: run $0 install (or MODELCAST_GARAGE=0)"
	fi
	if [[ $WITH_S3S_FS != 0 ]]; then
		[[ -x $(bin_path s3s-fs "$S3S_FS_VERSION") ]] ||
			die "s3s-fs $S3S_FS_VERSION not installed: run $0 install (or MODELCAST_S3S_FS=0)"
	fi

	local pid
	for pid in $(recorded_pids "$dir"); do
		die "the test bed in $dir is running (pid $pid): stop it first"
	done
	load_secrets "$dir"

	# Ports are picked just before each server starts, to leave little time
	# for anything else to take them.
	local kafka_port sasl_port controller_port s3_port rpc_port admin_port s3s_port
	read -r kafka_port sasl_port controller_port <<<"$(free_ports 3)"
	start_kafka "$dir" "$kafka_port" "$sasl_port" "$controller_port"
	if [[ $WITH_GARAGE != 0 ]]; then
		read -r s3_port rpc_port admin_port <<<"$(free_ports 3)"
		start_garage "$dir" "$s3_port" "$rpc_port" "$admin_port"
	fi
	if [[ $WITH_S3S_FS != 0 ]]; then
		s3s_port=$(free_ports 1)
		start_s3s_fs "$dir" "$s3s_port"
	fi

	{
		printf '# modelcast test bed in %s, written by %s\n' "$dir" "$0"
		printf 'export %s=%q\n' \
			MODELCAST_TEST_SERVICES_DIR "$dir" \
			MODELCAST_TEST_BROKER "kafka-$KAFKA_VERSION" \
			MODELCAST_TEST_BOOTSTRAP "127.0.0.1:$kafka_port" \
			MODELCAST_TEST_KAFKA_PID "$KAFKA_PID" \
			MODELCAST_TEST_SASL_BOOTSTRAP "localhost:$sasl_port" \
			MODELCAST_TEST_SASL_CA "$dir/tls/ca.pem" \
			MODELCAST_TEST_SASL_USER "$SASL_USER" \
			MODELCAST_TEST_SASL_PASSWORD "$SASL_PASSWORD"
		if [[ $WITH_GARAGE != 0 ]]; then
			printf 'export %s=%q\n' \
				MODELCAST_TEST_S3_ENDPOINT "http://127.0.0.1:$s3_port" \
				MODELCAST_TEST_S3_BUCKET "$S3_BUCKET" \
				MODELCAST_TEST_S3_ACCESS_KEY "$GARAGE_ACCESS_KEY" \
				MODELCAST_TEST_S3_SECRET_KEY "$GARAGE_SECRET_KEY" \
				MODELCAST_TEST_S3_REGION "$GARAGE_REGION" \
				MODELCAST_TEST_GARAGE_ADMIN "http://127.0.0.1:$admin_port" \
				MODELCAST_TEST_GARAGE_PID "$GARAGE_PID"
		fi
		if [[ $WITH_S3S_FS != 0 ]]; then
			printf 'export %s=%q\n' \
				MODELCAST_TEST_S3S_ENDPOINT "http://127.0.0.1:$s3s_port" \
				MODELCAST_TEST_S3S_BUCKET "$S3_BUCKET" \
				MODELCAST_TEST_S3S_ACCESS_KEY "$S3S_ACCESS_KEY" \
				MODELCAST_TEST_S3S_SECRET_KEY "$S3S_SECRET_KEY" \
				MODELCAST_TEST_S3S_REGION "$S3S_REGION" \
				MODELCAST_TEST_S3S_PID "$S3S_PID"
		fi
		if [[ $WITH_CHROMIUM == 0 ]]; then
			printf 'export MODELCAST_CHROMIUM=0\n'
		elif command -v chromium >/dev/null; then
			printf 'export %s=%q\n' MODELCAST_TEST_CHROMIUM "$(command -v chromium)"
		fi
		if [[ $WITH_EXPORT_CHECKS == 0 ]]; then
			printf 'export MODELCAST_EXPORT_CHECKS=0\n'
		else
			local venv tract
			venv=$(export_venv)
			tract="$(tract_check_root)/bin/tract-check"
			[[ -x $venv/bin/python ]] && printf 'export %s=%q\n' MODELCAST_TEST_EXPORT_PYTHON "$venv/bin/python"
			[[ -x $tract ]] && printf 'export %s=%q\n' MODELCAST_TEST_TRACT "$tract"
		fi
	} >"$dir/env.sh"
	log "test bed up: source $dir/env.sh"
}

# ---------------------------------------------------------------- stop

# recorded_pids DIR: pids in DIR/*.pid that still run the server recorded
# with them (a pid file left by a crash may name a recycled pid). A pid file
# holds "PID NAME"; NAME is the process name, except for kafka: a JVM, named
# java, with the argument kafka.Kafka.
recorded_pids() {
	local pidfile pid name comm
	for pidfile in "$1"/*.pid; do
		[[ -e $pidfile ]] || continue
		read -r pid name <"$pidfile" || true
		[[ $pid =~ ^[0-9]+$ ]] || continue
		comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
		if [[ $name == kafka ]]; then
			[[ $comm == java ]] || continue
			grep -qzx 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || continue
		elif [[ $comm != "$name" ]]; then
			continue
		fi
		if alive "$pid"; then printf '%s\n' "$pid"; fi
	done
}

cmd_stop() {
	(($# == 1)) || usage
	local dir=$1 pid
	local pids=()
	for pid in $(recorded_pids "$dir"); do
		kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
	done
	rm -f "$dir"/*.pid
	((${#pids[@]})) || return 0
	local i
	for ((i = 0; i < 50; i++)); do
		local left=()
		for pid in "${pids[@]}"; do
			if alive "$pid"; then left+=("$pid"); fi
		done
		((${#left[@]})) || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if alive "$pid"; then
			log "pid $pid did not stop within 5 s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	log "stopped the test bed in $dir"
}

# ---------------------------------------------------------------- run

RUN_DIR=""
RUN_CHILD=""
RUN_STATUS=0

run_cleanup() {
	[[ -n $RUN_DIR ]] || return 0
	cmd_stop "$RUN_DIR"
	if ((RUN_STATUS != 0)); then
		local logfile
		for logfile in "$RUN_DIR"/*.log; do
			[[ -e $logfile ]] || continue
			log "last lines of $(basename "$logfile"):"
			tail -n 20 "$logfile" >&2 || true
		done
	fi
	rm -rf "$RUN_DIR"
}

# run_signal SIGNAL STATUS: pass SIGNAL on to CMD, then exit (and clean up).
run_signal() {
	RUN_STATUS=$2
	if [[ -n $RUN_CHILD ]]; then
		kill -"$1" "$RUN_CHILD" 2>/dev/null || true
		wait "$RUN_CHILD" 2>/dev/null || true
	fi
	exit "$RUN_STATUS"
}

cmd_run() {
	(($# > 0)) || usage
	cmd_install
	RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/modelcast-services.XXXXXX")
	trap run_cleanup EXIT
	trap 'run_signal INT 130' INT
	trap 'run_signal TERM 143' TERM
	cmd_start "$RUN_DIR"
	# shellcheck source=/dev/null
	source "$RUN_DIR/env.sh"
	export MODELCAST_REQUIRE_SERVICES=1
	# CMD runs in the background so that a signal reaches the traps at once
	# (bash defers traps while a foreground command runs); it keeps stdin.
	"$@" <&0 &
	RUN_CHILD=$!
	wait "$RUN_CHILD" || RUN_STATUS=$?
	RUN_CHILD=""
	exit "$RUN_STATUS"
}

main() {
	(($# > 0)) || usage
	local cmd=$1
	shift
	case $cmd in
	install)
		(($# == 0)) || usage
		cmd_install
		;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	run) cmd_run "$@" ;;
	-h | --help | help) usage 0 ;;
	*) usage ;;
	esac
}

main "$@"
