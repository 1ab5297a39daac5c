# Helpers shared by the crash tests in test/t: restarting a server after
# kill -9, and checking its btree indexes with amcheck.
package OrderflowCrash;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(restart_after_kill amcheck_ok);

# restart_after_kill(NODE): start NODE again after its postmaster was
# killed; true once it runs.  Orphaned backends may keep the old shared
# memory for a moment, so the start is retried as PostgreSQL's 017_shm.pl
# (poll_start) does, stopping in between in case an attempt half-started
# or left a stale pid file behind.
sub restart_after_kill
{
	my ($node) = @_;
	for (my $i = 0; $i < 10 * $PostgreSQL::Test::Utils::timeout_default; $i++)
	{
		return 1 if $node->start(fail_ok => 1);
		usleep(100_000);
		$node->stop('fast', fail_ok => 1);
	}
	return 0;
}

# amcheck_ok(NODE, DB, NAME): one test, passing when bt_index_check finds
# every btree index of schema orderflow in DB intact (amcheck must be
# installed there).
sub amcheck_ok
{
	my ($node, $db, $name) = @_;
	my ($ret, $out, $err) = $node->psql($db, q{
SELECT count(bt_index_check(c.oid, true))
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_am am ON am.oid = c.relam
 WHERE n.nspname = 'orderflow' AND am.amname = 'btree' AND c.relpersistence = 'p'});
	return ok($ret == 0 && $out > 0, "$name: amcheck finds the $out btree indexes intact")
	  || diag("amcheck: $err");
}

1;
