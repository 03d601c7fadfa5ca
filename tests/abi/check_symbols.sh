#!/usr/bin/env bash
# check_symbols.sh: the dynamic symbols a shared library exports must be
# exactly the functions (and objects) its public headers declare with an
# export macro (MRKEY_EXTERN, or a backend's MRKEY_<NAME>_EXTERN).
#
# usage: check_symbols.sh [--only HDR]... [--exclude HDR]... LIB.so INCDIR
#   LIB.so   the library to inspect (nm -D --defined-only)
#   INCDIR   the directory holding the headers (include/mrkey)
#   --only HDR     take declarations from HDR only (a file name in INCDIR);
#                  may be repeated
#   --exclude HDR  skip HDR (e.g. qib.h when checking libmrkey.so);
#                  may be repeated
#
# Prints both lists' differences and exits 1 on any; 0 when they are equal.
set -u -o pipefail

only=()
exclude=()
while [ $# -gt 0 ]; do
	case "$1" in
	--only)
		only+=("$2")
		shift 2
		;;
	--exclude)
		exclude+=("$2")
		shift 2
		;;
	--)
		shift
		break
		;;
	-*)
		echo "check_symbols: unknown option $1" >&2
		exit 2
		;;
	*)
		break
		;;
	esac
done
if [ $# -ne 2 ]; then
	echo "usage: $0 [--only HDR]... [--exclude HDR]... LIB.so INCDIR" >&2
	exit 2
fi
lib=$1
incdir=$2
if [ ! -f "$lib" ]; then
	echo "check_symbols: $lib: no such file" >&2
	exit 2
fi
if [ ! -d "$incdir" ]; then
	echo "check_symbols: $incdir: no such directory" >&2
	exit 2
fi

headers=()
if [ ${#only[@]} -gt 0 ]; then
	for h in "${only[@]}"; do
		headers+=("$incdir/$h")
	done
else
	for h in "$incdir"/*.h; do
		skip=0
		for x in "${exclude[@]+"${exclude[@]}"}"; do
			if [ "$(basename "$h")" = "$x" ]; then
				skip=1
			fi
		done
		if [ $skip -eq 0 ]; then
			headers+=("$h")
		fi
	done
fi
for h in "${headers[@]}"; do
	if [ ! -f "$h" ]; then
		echo "check_symbols: $h: no such header" >&2
		exit 2
	fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declared: strip comments and preprocessor lines, split at ';' and '{',
# keep the declarations that carry an export macro, and take the name:
# the identifier before the first '(' for a function, the last identifier
# for an object. perl is part of every Debian system (perl-base).
perl -0777 -ne '
	s{/\*.*?\*/}{ }gs;        # block comments
	s{//[^\n]*}{ }g;          # line comments
	s{^[ \t]*#(?:[^\n]*\\\n)*[^\n]*}{ }mg; # directives, with continuations
	for my $decl (split /[;{}]/) {
		next unless $decl =~ /\bMRKEY(?:_[A-Z0-9]+)?_EXTERN\b(.*)$/s;
		my $rest = $1;
		if ($rest =~ /^([^(]*?)\b([A-Za-z_]\w*)\s*\(/s) {
			my ($pre, $name) = ($1, $2);
			# a function-pointer object: "(*name)"
			if ($rest =~ /\(\s*\*\s*([A-Za-z_]\w*)\s*\)/s &&
			    $pre !~ /\w/) {
				$name = $1;
			}
			print "$name\n";
		} elsif ($rest =~ /\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)*(?:=.*)?$/s) {
			print "$1\n";
		}
	}
' "${headers[@]}" | LC_ALL=C sort -u >"$tmp/declared"

# Exported: defined dynamic symbols, minus the version nodes of the linker
# script (type A) and symbols every shared object carries.
nm -D --defined-only "$lib" | awk '
	NF >= 3 && $2 != "A" && $2 != "a" {
		sub(/@.*/, "", $3)
		print $3
	}' | grep -v -x -E '_init|_fini|_edata|_end|__bss_start' |
	LC_ALL=C sort -u >"$tmp/exported"

ndecl=$(wc -l <"$tmp/declared")
nexp=$(wc -l <"$tmp/exported")
if [ "$ndecl" -eq 0 ]; then
	echo "check_symbols: no exported declarations found in ${headers[*]}" >&2
	exit 1
fi

missing=$(LC_ALL=C comm -23 "$tmp/declared" "$tmp/exported")
extra=$(LC_ALL=C comm -13 "$tmp/declared" "$tmp/exported")
status=0
if [ -n "$missing" ]; then
	echo "declared in the headers but not exported by $(basename "$lib"):"
	sed 's/^/  /' <<<"$missing"
	status=1
fi
if [ -n "$extra" ]; then
	echo "exported by $(basename "$lib") but not declared in the headers:"
	sed 's/^/  /' <<<"$extra"
	status=1
fi
if [ $status -eq 0 ]; then
	echo "$(basename "$lib"): $nexp exported symbols, exactly the $ndecl declared"
fi
exit $status
