#!/bin/sh
# mrkey-bench's command line: every bad value is refused before anything
# runs, with exit status 2 and the option named on stderr; good values run.
# Usage: bench_cli.sh MRKEY-BENCH VERSION
set -u
bench=$1
version=$2
fails=0
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# bad OPTION VALUE [WHAT]: exit 2, stderr names --OPTION and quotes WHAT
# (the bad list element; VALUE by default)
bad() {
	"$bench" "--$1" "$2" >/dev/null 2>"$err"
	rc=$?
	if [ "$rc" -ne 2 ]; then
		echo "FAIL: --$1 '$2': exit $rc, want 2"
		fails=$((fails + 1))
	elif ! grep -q -- "--$1: .*'${3-$2}'" "$err"; then
		echo "FAIL: --$1 '$2': stderr does not name the option:"
		cat "$err"
		fails=$((fails + 1))
	fi
}

bad threads 0
bad threads -1
bad threads 1,0 0
bad threads 1,,2 ''
bad threads 2x
bad threads 1025
bad regions -5
bad regions 0
bad regions 5M
bad regions 99999999999999999999999
bad duration-ms 5x
bad duration-ms 0
bad duration-ms ' 5'
bad warmup-ms -1
bad warmup-ms 1e3
bad reps 0
bad reps 102
bad wake-delay-us -1
bad wake-delay-us 1000001
bad max-other abc
bad max-other 101
bad max-other +5
bad seed -1
bad seed 0xg
bad allocator foo
bad impl nope
bad scenario nope

"$bench" --no-such-option >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: unknown option: exit $rc, want 2"; fails=$((fails + 1)); }

out=$("$bench" --version)
case $out in
*"$version"*) ;;
*) echo "FAIL: --version printed '$out', want $version"; fails=$((fails + 1)) ;;
esac

# A good run: numbers at the edges of their ranges, suffixes, a seed.
if ! "$bench" --scenario churn,lookup-random --impl mrkey,qib-2012 \
	--threads 1 --regions 1K --duration-ms 1 --warmup-ms 0 --reps 1 \
	--max-other 0 --wake-delay-us 0 --seed 0x2a >/dev/null 2>"$err"; then
	echo "FAIL: a good command line failed:"
	cat "$err"
	fails=$((fails + 1))
fi

[ "$fails" -eq 0 ] && echo "bench_cli: all cases passed"
exit "$fails"
