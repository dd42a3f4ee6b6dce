#!/usr/bin/env bash
# Tests the packages that `make package` left in dist/ (`make package-test`; run as root):
#   - the version mapping of packaging/version.sh;
#   - both .deb and both .rpm: names, metadata, file lists, modes, conffile marking, scripts,
#     the binary's architecture and baked-in version;
#   - the systemd unit: `systemd-analyze security --offline=true` exposure <= 2.0 and
#     `systemd-analyze verify` clean (in the installed Debian root);
#   - lintian on the .debs: no errors, and every warning listed in packaging/README.md;
#   - installs: the .rpm into a scratch root (rpm --root --initdb; rpm -i --nodeps) and the .deb
#     into a minimal Debian root made by debootstrap from this machine's apt mirror (cached in
#     $DEBOOTSTRAP_CACHE), then the installed binary's `version`, `check` on the installed
#     default config (against cmd/ec2fake on 127.0.0.1) and `serve`, enabling on install, upgrade
#     over itself keeping an edited config, removal and (deb) purge.
# Nothing leaves loopback: AWS calls go to the fake, IMDS is disabled. Needs: dpkg-deb, rpm,
# lintian, systemd-analyze, debootstrap (the Debian root is skipped, saying so, when
# debootstrap cannot run). Ends with "packaging: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DEBOOTSTRAP_CACHE=${DEBOOTSTRAP_CACHE:-/var/cache/dcv-ec2-resolver-ci}
MAX_EXPOSURE=2.0
NAME=dcv-ec2-resolver
UNIT=$NAME.service

passed=0 failed=0 skipped=0
work=$(mktemp -d /tmp/$NAME-pkgtest.XXXXXX)
fake_pid="" serve_pid=""
cleanup() {
	[ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
	[ -z "$fake_pid" ] || kill "$fake_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

pass() {
	passed=$((passed + 1))
	echo "PASS  $*"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL  $*"
}
skip() {
	skipped=$((skipped + 1))
	echo "SKIP  $*"
}
# check DESCRIPTION COMMAND...: PASS if the command succeeds, else FAIL with its output.
check() {
	local desc=$1 out=$work/check.out
	shift
	if "$@" >"$out" 2>&1; then
		pass "$desc"
	else
		fail "$desc"
		sed 's/^/      | /' "$out" | tail -n 40
	fi
}
# same A B: succeeds if the strings are equal, else prints both.
same() {
	if [ "$1" = "$2" ]; then return 0; fi
	printf 'got:\n%s\nwant:\n%s\n' "$1" "$2"
	diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") || true
	return 1
}
contains() { # contains HAYSTACK NEEDLE
	if [[ $1 == *"$2"* ]]; then return 0; fi
	printf 'output:\n%s\ndoes not contain: %s\n' "$1" "$2"
	return 1
}
require() {
	local tool
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null; then
			echo "packaging/test.sh: $tool is missing (.ci/run installs it)" >&2
			exit 1
		fi
	done
}
require dpkg-deb rpm rpm2archive lintian systemd-analyze chroot curl
CHROOT=$(command -v chroot)

# ---------------------------------------------------------------------------------------------
echo "== version mapping (packaging/version.sh)"
version_cases() {
	local describe want got bad=0
	while read -r describe want; do
		got=$(packaging/version.sh "$describe" 2>/dev/null || echo ERROR)
		if [ "$got" != "$want" ]; then
			echo "$describe -> $got, want $want"
			bad=1
		fi
	done <<-'EOF'
		v1.2.3 1.2.3
		1.2.3 1.2.3
		v1.2.3-rc.1 1.2.3~rc.1
		v1.2.3-4-gabc1234 1.2.3+git4.abc1234
		v1.2.3-rc.1-4-gabc1234 1.2.3~rc.1+git4.abc1234
		v1.2.3-dirty 1.2.3+dirty
		v1.2.3-4-gabc1234-dirty 1.2.3+git4.abc1234.dirty
		abc1234 0.0.0~gitabc1234
		1234abc 0.0.0~git1234abc
		abc1234-dirty 0.0.0~gitabc1234.dirty
		not/a/version ERROR
	EOF
	return $bad
}
check "version.sh maps git describe output to dpkg/rpm versions" version_cases
ordered() { # the mapped versions sort as the releases they come from, in dpkg and rpm
	local a b
	for pair in "1.2.3~rc.1 1.2.3" "1.2.3 1.2.3+git4.abc1234" "1.2.3+git4.abc1234 1.2.4~rc.1" "0.0.0~git9.abc1234 0.0.0~git10.abc1234" "0.0.0~git10.abc1234 0.1.0"; do
		read -r a b <<<"$pair"
		dpkg --compare-versions "$a" lt "$b" || { echo "dpkg: not $a < $b"; return 1; }
		[ "$(rpm --eval "%{lua: print(rpm.vercmp('$a', '$b'))}")" = "-1" ] || { echo "rpm: not $a < $b"; return 1; }
	done
}
check "mapped versions order correctly in dpkg and rpm" ordered

VERSION=${PKG_VERSION:-$(packaging/version.sh)}
echo "   package version: $VERSION"

# ---------------------------------------------------------------------------------------------
echo "== package contents"
declare -A DEB RPM
DEB[amd64]=dist/${NAME}_${VERSION}_amd64.deb
DEB[arm64]=dist/${NAME}_${VERSION}_arm64.deb
RPM[amd64]=dist/$NAME-$VERSION-1.x86_64.rpm
RPM[arm64]=dist/$NAME-$VERSION-1.aarch64.rpm
for arch in amd64 arm64; do
	for f in "${DEB[$arch]}" "${RPM[$arch]}"; do
		if [ ! -f "$f" ]; then
			echo "packaging/test.sh: $f is missing: run make package first" >&2
			exit 1
		fi
	done
done

doc=/usr/share/doc/$NAME
common_files="/etc/$NAME/resolver.toml
/usr/bin/$NAME
/usr/lib/systemd/system/$UNIT
$doc/LICENSE
$doc/README.md
$doc/iam-policy-assume-role.json
$doc/iam-policy.json
$doc/third-party-licenses.txt
/usr/share/man/man1/$NAME.1.gz"
want_deb_files=$(printf '%s\n' "$common_files" "$doc/changelog.gz" "$doc/copyright" "/usr/share/lintian/overrides/$NAME" | sort)
want_rpm_files=$(printf '%s\n' "$common_files" "/etc/$NAME" "$doc" | sort)

# elf_machine FILE: the ELF e_machine of FILE (62 x86-64, 183 aarch64) and whether it is static.
elf_machine() { od -An -t u2 -j 18 -N 2 "$1" | tr -d ' '; }

# deb_file DEB PATH: prints a file of the package.
deb_file() { dpkg-deb --fsys-tarfile "$1" | tar -xOf - ".$2"; }
rpm_file() { rpm2archive -n <"$1" | tar -xOf - ".$2"; }

for arch in amd64 arm64; do
	deb=${DEB[$arch]}
	machine=62
	[ $arch = arm64 ] && machine=183

	deb_meta() {
		same "$(dpkg-deb -f "$deb" Package Version Architecture Section Priority Depends Homepage)" \
			"Package: $NAME
Version: $VERSION
Architecture: $arch
Section: net
Priority: optional
Depends: init-system-helpers (>= 1.54~)
Homepage: https://github.com/dcv-ec2-resolver/dcv-ec2-resolver" &&
			contains "$(dpkg-deb -f "$deb" Maintainer)" "@" &&
			contains "$(dpkg-deb -f "$deb" Description)" "Amazon DCV Connection Gateway"
	}
	check "$deb: metadata" deb_meta

	deb_files() {
		same "$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' | sort)" "$want_deb_files"
	}
	check "$deb: file list" deb_files

	deb_modes() {
		same "$(dpkg-deb -c "$deb" | awk '{ sub(/^\./, "", $6); print $1, $2, $6 }' | grep -E " (/usr/bin/$NAME|/etc/$NAME/resolver.toml|/usr/lib/systemd/system/$UNIT|$doc/iam-policy.json)\$" | sort -k3)" \
			"-rw-r--r-- root/root /etc/$NAME/resolver.toml
-rwxr-xr-x root/root /usr/bin/$NAME
-rw-r--r-- root/root /usr/lib/systemd/system/$UNIT
-rw-r--r-- root/root $doc/iam-policy.json" &&
			same "$(dpkg-deb -c "$deb" | awk '$1 !~ /^-rw-r--r--$|^drwxr-xr-x$/ { print $1, $6 }')" "-rwxr-xr-x ./usr/bin/$NAME" &&
			same "$(dpkg-deb -c "$deb" | awk '$2 != "root/root"')" ""
	}
	check "$deb: modes and owners (binary 0755, everything else 0644/0755 dirs, root)" deb_modes

	deb_conffiles() {
		same "$(dpkg-deb -I "$deb" conffiles)" "/etc/$NAME/resolver.toml"
	}
	check "$deb: resolver.toml is the only conffile" deb_conffiles

	deb_scripts() {
		local d=$work/deb-control-$arch s
		rm -rf "$d" && dpkg-deb -e "$deb" "$d"
		same "$(cd "$d" && ls | sort | tr '\n' ' ')" "conffiles control md5sums postinst postrm prerm " || return 1
		for s in postinst prerm postrm; do
			[ -x "$d/$s" ] || { echo "$s not executable"; return 1; }
			cmp "$d/$s" "packaging/deb/$s" || return 1
			sh -n "$d/$s" || return 1
		done
	}
	check "$deb: maintainer scripts postinst/prerm/postrm, executable, valid sh" deb_scripts

	deb_payload() {
		local bin=$work/bin-deb-$arch
		cmp <(deb_file "$deb" "/etc/$NAME/resolver.toml") packaging/resolver.toml &&
			cmp <(deb_file "$deb" "/usr/lib/systemd/system/$UNIT") packaging/$UNIT &&
			cmp <(deb_file "$deb" "$doc/iam-policy.json") packaging/iam-policy.json &&
			cmp <(deb_file "$deb" "$doc/LICENSE") LICENSE &&
			deb_file "$deb" "/usr/bin/$NAME" >"$bin" &&
			same "$(elf_machine "$bin")" "$machine" &&
			grep -qaF "$VERSION" "$bin"
	}
	check "$deb: shipped config, unit, policy, licence as in packaging/; $arch binary with the version" deb_payload

	rpm=${RPM[$arch]}
	rpmarch=x86_64
	[ $arch = arm64 ] && rpmarch=aarch64

	rpm_meta() {
		same "$(rpm -qp --qf '%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{OS}|%{LICENSE}|%{URL}\n' "$rpm")" \
			"$NAME|$VERSION|1|$rpmarch|linux|Apache-2.0|https://github.com/dcv-ec2-resolver/dcv-ec2-resolver" &&
			contains "$(rpm -qp --qf '%{SUMMARY}' "$rpm")" "Amazon DCV Connection Gateway" &&
			same "$(rpm -qp --requires "$rpm" | grep -v '^rpmlib(' | grep -v '^/bin/sh$' || true)" ""
	}
	check "$rpm: metadata (version-1.$rpmarch, no dependencies)" rpm_meta

	rpm_files() {
		same "$(rpm -qpl "$rpm" | sort)" "$want_rpm_files"
	}
	check "$rpm: file list" rpm_files

	rpm_modes() {
		same "$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" | sort -k3)" \
			"drwxr-xr-x root:root /etc/$NAME
-rw-r--r-- root:root /etc/$NAME/resolver.toml
-rwxr-xr-x root:root /usr/bin/$NAME
-rw-r--r-- root:root /usr/lib/systemd/system/$UNIT
drwxr-xr-x root:root $doc
-rw-r--r-- root:root $doc/LICENSE
-rw-r--r-- root:root $doc/README.md
-rw-r--r-- root:root $doc/iam-policy-assume-role.json
-rw-r--r-- root:root $doc/iam-policy.json
-rw-r--r-- root:root $doc/third-party-licenses.txt
-rw-r--r-- root:root /usr/share/man/man1/$NAME.1.gz"
	}
	check "$rpm: modes and owners" rpm_modes

	rpm_flags() {
		same "$(rpm -qpc "$rpm")" "/etc/$NAME/resolver.toml" &&
			same "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | grep -v '^ ' | sort -k2)" \
				"cn /etc/$NAME/resolver.toml
l $doc/LICENSE
d $doc/README.md
l $doc/third-party-licenses.txt"
	}
	check "$rpm: resolver.toml is %config(noreplace); README %doc, licences %license" rpm_flags

	rpm_scripts() {
		local s=$work/rpm-scripts-$arch
		rpm -qp --qf '%{POSTIN}--\n%{PREUN}--\n%{POSTUN}' "$rpm" >"$s"
		same "$(cat "$s")" "$(cat packaging/rpm/post; echo --; cat packaging/rpm/preun; echo --; cat packaging/rpm/postun)" &&
			same "$(rpm -qp --qf '%{PREIN}|%{PRETRANS}|%{POSTTRANS}' "$rpm")" "(none)|(none)|(none)" &&
			sh -n packaging/rpm/post && sh -n packaging/rpm/preun && sh -n packaging/rpm/postun
	}
	check "$rpm: scriptlets %post/%preun/%postun as in packaging/rpm, nothing else" rpm_scripts

	rpm_payload() {
		local bin=$work/bin-rpm-$arch
		cmp <(rpm_file "$rpm" "/etc/$NAME/resolver.toml") packaging/resolver.toml &&
			cmp <(rpm_file "$rpm" "/usr/lib/systemd/system/$UNIT") packaging/$UNIT &&
			rpm_file "$rpm" "/usr/bin/$NAME" >"$bin" &&
			cmp "$bin" "$work/bin-deb-$arch" &&
			same "$(elf_machine "$bin")" "$machine"
	}
	check "$rpm: same config, unit and binary as the .deb" rpm_payload
done

iam_policy() {
	local f=packaging/iam-policy.json
	if command -v jq >/dev/null; then
		same "$(jq -c . "$f")" '{"Version":"2012-10-17","Statement":[{"Sid":"DcvEc2ResolverDescribeInstances","Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*"}]}' &&
			same "$(jq -r '.Statement[].Action' packaging/iam-policy-assume-role.json)" "sts:AssumeRole"
	elif command -v python3 >/dev/null; then
		python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); s=p["Statement"]; assert len(s)==1 and s[0]["Action"]=="ec2:DescribeInstances" and s[0]["Effect"]=="Allow", s; assert json.load(open(sys.argv[2]))["Statement"][0]["Action"]=="sts:AssumeRole"' "$f" packaging/iam-policy-assume-role.json
	else
		grep -q '"Action": "ec2:DescribeInstances"' "$f"
	fi
}
check "iam-policy.json allows exactly ec2:DescribeInstances (sts:AssumeRole kept apart)" iam_policy

# ---------------------------------------------------------------------------------------------
echo "== systemd unit"
security() {
	local out score
	out=$(systemd-analyze security --offline=true --no-pager "packaging/$UNIT" 2>&1) || true
	score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p')
	echo "exposure: ${score:-?}"
	[ -n "$score" ] || { printf '%s\n' "$out"; return 1; }
	awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' || { printf '%s\n' "$out" | grep '✗'; return 1; }
	EXPOSURE=$score
}
EXPOSURE=?
if security >"$work/sec.out" 2>&1; then
	EXPOSURE=$(sed -n 's/^exposure: //p' "$work/sec.out")
	pass "systemd-analyze security --offline=true: exposure $EXPOSURE <= $MAX_EXPOSURE"
else
	fail "systemd-analyze security --offline=true: exposure above $MAX_EXPOSURE"
	sed 's/^/      | /' "$work/sec.out"
fi
unit_keys() {
	local u=packaging/$UNIT k
	for k in "Type=notify" "Restart=on-failure" 'ExecReload=/bin/kill -HUP $MAINPID' "DynamicUser=yes" \
		"ExecStart=/usr/bin/$NAME serve --config /etc/$NAME/resolver.toml" "WantedBy=multi-user.target" \
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "CapabilityBoundingSet=" "SystemCallFilter=@system-service"; do
		grep -qxF -- "$k" "$u" || { echo "missing: $k"; return 1; }
	done
	! grep -E '^(IPAddressDeny|PrivateNetwork|User|Group)=' "$u"
}
check "unit: notify, restart on failure, SIGHUP reload, dynamic user, no IP filter that blocks IMDS/EC2" unit_keys

# ---------------------------------------------------------------------------------------------
echo "== lintian"
lint() {
	local out tags listed bad=0
	if ! lintian --fail-on none --pedantic --display-info --show-overrides "$@" >"$work/lintian.out" 2>&1; then
		cat "$work/lintian.out"
		echo ">> lintian itself failed"
		return 1
	fi
	out=$(grep -v '^running with root privileges' "$work/lintian.out" || true)
	printf '%s\n' "$out"
	if grep -q '^E: ' <<<"$out"; then
		echo ">> lintian reported errors"
		bad=1
	fi
	# Every warning (and pedantic/info note) must be listed, with its reason, in packaging/README.md.
	listed=$(sed -n 's/^| `\([a-z0-9.+-]*\)` |.*/\1/p' packaging/README.md)
	tags=$(printf '%s\n' "$out" | sed -n 's/^[WIPO]: [^ ]*: \([a-z0-9.+-]*\).*/\1/p' | sort -u)
	for t in $tags; do
		if ! grep -qxF "$t" <<<"$listed"; then
			echo ">> $t is not listed in packaging/README.md"
			bad=1
		fi
	done
	return $bad
}
check "lintian: no errors; every tag listed with its reason in packaging/README.md" lint "${DEB[amd64]}" "${DEB[arm64]}"

# ---------------------------------------------------------------------------------------------
echo "== install tests"
# The fake EC2 endpoint on loopback, with three tagged instances in us-east-1.
mkdir -p dist/build
CGO_ENABLED=0 $GO build -o "$work/ec2fake" ./cmd/ec2fake
"$work/ec2fake" -listen 127.0.0.1:0 -region us-east-1 -instances 3 >"$work/fake.out" 2>&1 &
fake_pid=$!
fake_url=""
for _ in $(seq 100); do
	fake_url=$(head -n1 "$work/fake.out" 2>/dev/null || true)
	[ -n "$fake_url" ] && break
	sleep 0.1
done
case $fake_url in
http://127.0.0.1:*) echo "   fake EC2 endpoint: $fake_url" ;;
*)
	echo "packaging/test.sh: ec2fake did not start: $(cat "$work/fake.out")" >&2
	exit 1
	;;
esac

# in_root ROOT CMD...: runs CMD chrooted into ROOT with a clean environment that keeps the AWS
# SDK on loopback: static fake credentials, no shared config, IMDS disabled.
in_root() {
	local root=$1 exec_root=()
	shift
	[ "${IN_ROOT_EXEC:-}" = 1 ] && exec_root=(exec)
	# env runs outside (an empty rpm root has none); the binary is static.
	"${exec_root[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent LANG=C.UTF-8 \
		AWS_ACCESS_KEY_ID=AKIDFAKE AWS_SECRET_ACCESS_KEY=fake AWS_EC2_METADATA_DISABLED=true \
		AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent "$CHROOT" "$root" "$@"
}
# test_config ROOT: the installed default config, pointed at the fake (the lines operators
# never get), as /tmp/resolver-test.toml inside ROOT.
test_config() {
	local root=$1 listen=$2
	mkdir -p "$root/tmp"
	sed -e "s|^\[ec2\]\$|[ec2]\nendpoint = \"$fake_url\"|" \
		-e 's|^regions = \[\]$|regions = ["us-east-1"]|' \
		-e "s|^listen = \"127.0.0.1:9000\"\$|listen = \"$listen\"|" \
		"$root/etc/$NAME/resolver.toml" >"$root/tmp/resolver-test.toml"
	grep -q "^endpoint = \"$fake_url\"" "$root/tmp/resolver-test.toml" &&
		grep -q '^regions = \["us-east-1"\]' "$root/tmp/resolver-test.toml"
}
# installed_binary_works ROOT: version, check on the default and the test config, and serve.
installed_binary_works() {
	local root=$1 out port
	out=$(in_root "$root" /usr/bin/$NAME version) && same "$out" "$NAME $VERSION" || return 1
	# As shipped (no region anywhere, IMDS off): the file is valid, EC2 cannot be reached.
	out=$(in_root "$root" /usr/bin/$NAME check 2>&1) && { echo "check without a region passed: $out"; return 1; }
	contains "$out" "ok    config /etc/$NAME/resolver.toml is valid" || return 1
	port=$((20000 + RANDOM % 20000))
	test_config "$root" "127.0.0.1:$port" || return 1
	out=$(in_root "$root" /usr/bin/$NAME check --config /tmp/resolver-test.toml 2>&1) || { echo "check failed: $out"; return 1; }
	echo "$out"
	contains "$out" "us-east-1: ec2:DescribeInstances is allowed" &&
		contains "$out" "us-east-1: 3 running instances tagged dcv:session-id, serving 3 sessions" || return 1
	# serve: the gateway's request for a tagged session is answered from the fake's data.
	# In the background subshell, exec: $! is then the daemon itself.
	IN_ROOT_EXEC=1 in_root "$root" /usr/bin/$NAME serve --config /tmp/resolver-test.toml >"$work/serve.log" 2>&1 &
	serve_pid=$!
	out=""
	for _ in $(seq 100); do
		out=$(curl -sS --max-time 2 -X POST "http://127.0.0.1:$port/resolveSession?sessionId=session-2&transport=HTTP" 2>/dev/null) && [ -n "$out" ] && break
		sleep 0.1
	done
	kill -TERM "$serve_pid"
	wait "$serve_pid" || { echo "serve exited with $?"; cat "$work/serve.log"; serve_pid=""; return 1; }
	serve_pid=""
	same "$out" '{"SessionId":"session-2","TransportProtocol":"HTTP","DcvServerEndpoint":"ip-10-0-0-2.ec2.internal","Port":8443,"WebUrlPath":"/"}' ||
		{ cat "$work/serve.log"; return 1; }
}
enabled() { [ -L "$1/etc/systemd/system/multi-user.target.wants/$UNIT" ]; }
edit_config() { # an operator's edit, to be kept across upgrades
	printf '\n# edited by the operator\n' >>"$1/etc/$NAME/resolver.toml"
	sed -i 's/^# level = "info"/level = "debug"/' "$1/etc/$NAME/resolver.toml"
	cp "$1/etc/$NAME/resolver.toml" "$work/edited.toml"
}

# The minimal Debian root: debootstrap from this machine's mirror, cached between runs.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '$1 == "deb" && $3 !~ /security/ { print ($2 ~ /^\[/ ? $3 : $2); exit }' /etc/apt/sources.list)
fi
cache=$DEBOOTSTRAP_CACHE/$codename
stamp="debootstrap --variant=minbase --include=systemd,procps $codename $mirror"
debroot_ok=""
if [ -n "$codename" ] && [ -f "$cache/.dcv-ec2-resolver-stamp" ] && [ "$(cat "$cache/.dcv-ec2-resolver-stamp")" = "$stamp" ]; then
	debroot_ok=1
	echo "   Debian root: $cache (cached)"
elif ! command -v debootstrap >/dev/null; then
	echo "   debootstrap is not installed"
elif [ -z "$codename" ] || [ -z "$mirror" ]; then
	echo "   cannot tell this machine's Debian release and apt mirror for debootstrap"
else
	echo "   Debian root: $stamp -> $cache (first run: a few minutes)"
	rm -rf "$cache.tmp"
	mkdir -p "$DEBOOTSTRAP_CACHE"
	if debootstrap --variant=minbase --include=systemd,procps "$codename" "$cache.tmp" "$mirror" >"$work/debootstrap.log" 2>&1; then
		echo "$stamp" >"$cache.tmp/.dcv-ec2-resolver-stamp"
		rm -rf "$cache" && mv "$cache.tmp" "$cache"
		debroot_ok=1
	else
		echo "   debootstrap failed:"
		tail -n 20 "$work/debootstrap.log" | sed 's/^/      | /'
		rm -rf "$cache.tmp"
	fi
fi

# --- .rpm: into a scratch root (a copy of the Debian root when there is one, so that the
# scriptlets have /bin/sh and systemctl; else an empty root, scriptlets not run).
rpm=${RPM[amd64]}
rroot=$work/rpmroot
rpm_opts=(--nodeps)
if [ -n "$debroot_ok" ]; then
	cp -a "$cache" "$rroot"
else
	mkdir -p "$rroot"
	rpm_opts+=(--noscripts)
	skip "rpm scriptlets (no Debian root to run them in): installed with --noscripts"
fi
rpm_install() {
	rpm --root "$rroot" --initdb &&
		rpm -i --root "$rroot" "${rpm_opts[@]}" "$rpm" >"$work/rpm-install.out" 2>&1 || { cat "$work/rpm-install.out"; return 1; }
	cat "$work/rpm-install.out"
	same "$(rpm --root "$rroot" -q $NAME)" "$NAME-$VERSION-1.x86_64" &&
		rpm --root "$rroot" -V $NAME &&
		[ -x "$rroot/usr/bin/$NAME" ] && [ -f "$rroot/etc/$NAME/resolver.toml" ] || return 1
	if [ -n "$debroot_ok" ]; then
		contains "$(cat "$work/rpm-install.out")" "installed and enabled, but NOT started" &&
			enabled "$rroot" || { echo "not enabled"; return 1; }
	fi
}
check "rpm -i --root: installs, verifies$([ -n "$debroot_ok" ] && echo ', enables the unit without starting it, says so')" rpm_install
check "rpm root: installed binary: version, check (default config valid; test config against the fake), serve" installed_binary_works "$rroot"
rpm_upgrade() {
	edit_config "$rroot"
	rpm -U --replacepkgs --root "$rroot" "${rpm_opts[@]}" "$rpm" >"$work/rpm-upgrade.out" 2>&1 || { cat "$work/rpm-upgrade.out"; return 1; }
	cmp "$rroot/etc/$NAME/resolver.toml" "$work/edited.toml" &&
		! ls "$rroot/etc/$NAME/"*.rpmnew "$rroot/etc/$NAME/"*.rpmsave 2>/dev/null &&
		! grep -q "NOT started" "$work/rpm-upgrade.out" &&
		{ [ -z "$debroot_ok" ] || enabled "$rroot"; } &&
		same "$(rpm --root "$rroot" -q $NAME)" "$NAME-$VERSION-1.x86_64"
}
check "rpm -U over itself: keeps the edited config, stays enabled" rpm_upgrade
rpm_erase() {
	rpm -e --root "$rroot" "${rpm_opts[@]}" $NAME || return 1
	[ ! -e "$rroot/usr/bin/$NAME" ] && [ ! -e "$rroot/usr/lib/systemd/system/$UNIT" ] &&
		! enabled "$rroot" &&
		[ ! -e "$rroot/etc/$NAME/resolver.toml" ] &&
		cmp "$rroot/etc/$NAME/resolver.toml.rpmsave" "$work/edited.toml" &&
		! rpm --root "$rroot" -q $NAME
}
check "rpm -e: removes files, disables the unit, keeps the edited config as .rpmsave" rpm_erase
rm -rf "$rroot"

# --- .deb: into the minimal Debian root.
if [ -z "$debroot_ok" ]; then
	skip ".deb install test and systemd-analyze verify: no Debian root (see above why debootstrap could not run)"
else
	deb=${DEB[amd64]}
	droot=$work/debroot
	cp -a "$cache" "$droot"
	cp "$deb" "$droot/tmp/pkg.deb"
	deb_install() {
		chroot "$droot" dpkg -i /tmp/pkg.deb >"$work/dpkg-install.out" 2>&1 || { cat "$work/dpkg-install.out"; return 1; }
		cat "$work/dpkg-install.out"
		same "$(chroot "$droot" dpkg-query -W -f '${Status} ${Version}' $NAME)" "install ok installed $VERSION" &&
			contains "$(cat "$work/dpkg-install.out")" "installed and enabled, but NOT started" &&
			enabled "$droot" &&
			chroot "$droot" dpkg --verify $NAME
	}
	check "dpkg -i in the Debian root: installs, enables the unit without starting it, says so" deb_install
	check "deb root: installed binary: version, check (default config valid; test config against the fake), serve" installed_binary_works "$droot"
	verify_unit() {
		local out
		out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no --root="$droot" "/usr/lib/systemd/system/$UNIT" 2>&1) || { echo "$out"; return 1; }
		same "$out" ""
	}
	check "systemd-analyze verify of the installed unit: clean" verify_unit
	deb_upgrade() {
		edit_config "$droot"
		chroot "$droot" dpkg -i /tmp/pkg.deb >"$work/dpkg-upgrade.out" 2>&1 || { cat "$work/dpkg-upgrade.out"; return 1; }
		cmp "$droot/etc/$NAME/resolver.toml" "$work/edited.toml" &&
			! ls "$droot/etc/$NAME/"*.dpkg-* 2>/dev/null &&
			! grep -q "NOT started" "$work/dpkg-upgrade.out" &&
			enabled "$droot"
	}
	check "dpkg -i over itself: keeps the edited config, stays enabled" deb_upgrade
	deb_remove() {
		chroot "$droot" dpkg -r $NAME || return 1
		[ ! -e "$droot/usr/bin/$NAME" ] && [ ! -e "$droot/usr/lib/systemd/system/$UNIT" ] &&
			! enabled "$droot" &&
			cmp "$droot/etc/$NAME/resolver.toml" "$work/edited.toml" &&
			same "$(chroot "$droot" dpkg-query -W -f '${Status}' $NAME)" "deinstall ok config-files"
	}
	check "dpkg -r: removes files, disables the unit, keeps the config" deb_remove
	deb_purge() {
		chroot "$droot" dpkg -P $NAME || return 1
		[ ! -e "$droot/etc/$NAME" ] &&
			[ ! -e "$droot/var/lib/systemd/deb-systemd-helper-enabled/$UNIT.dsh-also" ] &&
			! chroot "$droot" dpkg-query -W $NAME 2>/dev/null
	}
	check "dpkg -P: removes the config and its folder, and the enablement state" deb_purge
	deb_reinstall() { # after remove + purge, a new install is a first install again
		chroot "$droot" dpkg -i /tmp/pkg.deb >"$work/dpkg-reinstall.out" 2>&1 || { cat "$work/dpkg-reinstall.out"; return 1; }
		enabled "$droot" && cmp "$droot/etc/$NAME/resolver.toml" packaging/resolver.toml &&
			chroot "$droot" dpkg -P $NAME >/dev/null && [ ! -e "$droot/etc/$NAME" ]
	}
	check "dpkg -i after purge: a first install again (fresh config, enabled)" deb_reinstall
	rm -rf "$droot"
fi

echo
echo "systemd-analyze security exposure: $EXPOSURE"
if [ "$skipped" -gt 0 ]; then
	echo "packaging: $passed passed, $failed failed, $skipped skipped"
else
	echo "packaging: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
