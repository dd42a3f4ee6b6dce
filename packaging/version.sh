#!/usr/bin/env bash
# Prints the package version for the current checkout: the one place where `git describe`
# becomes a version that dpkg and rpm both accept and order correctly. It is baked into the
# binary too (`dcv-ec2-resolver version`).
#
#   packaging/version.sh              # from `git describe --tags --always --dirty`
#   packaging/version.sh DESCRIBE     # map a given describe string (used by the tests)
#
#   v1.2.3                  -> 1.2.3
#   v1.2.3-rc.1             -> 1.2.3~rc.1          (~ sorts before 1.2.3 in dpkg and rpm)
#   v1.2.3-4-gabc1234       -> 1.2.3+git4.abc1234  (4 commits after the tag)
#   abc1234 (no tag yet)    -> 0.0.0~git<N>.abc1234, N = commits in HEAD (orders builds;
#                              without a repository: 0.0.0~gitabc1234)
#   ...-dirty               -> ... .dirty / +dirty (uncommitted changes)
#
# The result only uses [0-9A-Za-z.+~] and starts with a digit: valid as a Debian version
# without a revision and as an RPM Version (which may not contain '-').
set -euo pipefail

count=""
if [ $# -ge 1 ]; then
	describe=$1
else
	cd "$(dirname "$0")/.."
	describe=$(git describe --tags --always --dirty 2>/dev/null) || {
		echo "version.sh: not a git checkout; pass a describe string" >&2
		exit 1
	}
	count=$(git rev-list --count HEAD 2>/dev/null || true)
fi

dirty=""
if [[ $describe == *-dirty ]]; then
	dirty=1
	describe=${describe%-dirty}
fi

if [[ $describe =~ ^[0-9a-f]{7,40}$ ]]; then
	# No tag yet: only an abbreviated commit hash (checked first: it may start with a digit).
	version="0.0.0~git${count:+$count.}$describe"
	[ -n "$dirty" ] && version+=".dirty"
elif [[ $describe =~ ^v?([0-9][0-9A-Za-z.]*)(-([0-9A-Za-z.]+))?-([0-9]+)-g([0-9a-f]+)$ ]]; then
	# A tag, then commits after it.
	version=${BASH_REMATCH[1]}
	[ -n "${BASH_REMATCH[3]}" ] && version+="~${BASH_REMATCH[3]}"
	version+="+git${BASH_REMATCH[4]}.${BASH_REMATCH[5]}"
	[ -n "$dirty" ] && version+=".dirty"
elif [[ $describe =~ ^v?([0-9][0-9A-Za-z.]*)(-([0-9A-Za-z.]+))?$ ]]; then
	# Exactly on a tag.
	version=${BASH_REMATCH[1]}
	[ -n "${BASH_REMATCH[3]}" ] && version+="~${BASH_REMATCH[3]}"
	[ -n "$dirty" ] && version+="+dirty"
else
	echo "version.sh: cannot make a package version of git describe output \"$describe\"" >&2
	exit 1
fi

if ! [[ $version =~ ^[0-9][0-9A-Za-z.+~]*$ ]]; then
	echo "version.sh: \"$version\" (from \"$describe\") is not a valid package version" >&2
	exit 1
fi
echo "$version"
