# Crash safety of order states and their audit history (SPEC invariants 2
# and 3): after an immediate crash of the server (SIGKILL to the
# postmaster) and crash recovery, every committed transition and its audit
# row are there, nothing of a transaction in flight at the crash survives,
# every order's hash chain verifies, and history_seq matches the number of
# events of each order.

use strict;
use warnings;

use IPC::Run;
use List::Util qw(sum);
use FindBin;
use lib $FindBin::RealBin;
use OrderflowCrash;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash_history');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'orderflow'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION orderflow');
$node->safe_psql('postgres',
	"SELECT orderflow.add_shop('crash shop', 'generic')");

# Six orders, each moved a different number of steps along the normal
# path, one committed transaction per step (half through transition(),
# half through a plain UPDATE).
my @path = qw(paid approved allocated picking picked packed shipped delivered completed);
my %committed_state;
for my $n (1 .. 6)
{
	$node->safe_psql('postgres',
		"INSERT INTO orderflow.orders (shop_id, order_no)"
		  . " SELECT id, 'CRASH-$n' FROM orderflow.shops WHERE name = 'crash shop'");
	$committed_state{"CRASH-$n"} = 'pending_payment';
	for my $step (0 .. $n)
	{
		my $to = $path[$step];
		my $sql = $step % 2
		  ? "UPDATE orderflow.orders SET state = '$to' WHERE order_no = 'CRASH-$n'"
		  : "SELECT orderflow.transition(id, '$to', 'committed step $step')"
		  . " FROM orderflow.orders WHERE order_no = 'CRASH-$n'";
		$node->safe_psql('postgres', $sql);
		$committed_state{"CRASH-$n"} = $to;
	}
}

# A session that moves three orders on and creates one, and does not commit.
# psql runs in the background through IPC::Run (portable to every PG 15
# minor, whether or not its Cluster.pm has background_psql).
my ($in, $out, $err) = ('', '', '');
my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $inflight = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', '-' ],
	'<', \$in, '>', \$out, '2>', \$err, $timer);
$in .= q{
BEGIN;
SELECT orderflow.transition(id, 'cancelled', 'uncommitted cancel')
  FROM orderflow.orders WHERE order_no IN ('CRASH-1', 'CRASH-2');
UPDATE orderflow.orders SET state = 'shipped' WHERE order_no = 'CRASH-5';
INSERT INTO orderflow.orders (shop_id, order_no, state)
  SELECT id, 'CRASH-UNCOMMITTED', 'paid' FROM orderflow.shops WHERE name = 'crash shop';
SELECT 'in-flight '
       || (SELECT count(*) FROM orderflow.order_events WHERE reason = 'uncommitted cancel') || ' '
       || (SELECT count(*) FROM orderflow.order_events e JOIN orderflow.orders o ON o.id = e.order_id
            WHERE o.order_no = 'CRASH-5' AND e.to_state::text = 'shipped');
};
$inflight->pump until $out =~ /in-flight \d+ \d+/ || $timer->is_expired;
like($out, qr/in-flight 2 1/, 'the in-flight transaction made its changes');
is($err, '', 'no error in the in-flight transaction');

# Write the dirty pages, uncommitted tuples included, to disk, so recovery
# has to treat them as aborted rather than merely never having seen them.
$node->safe_psql('postgres', 'CHECKPOINT');

# More committed transitions after the checkpoint, on orders the in-flight
# transaction does not touch, so that recovery has to redo them from WAL.
for my $move (['CRASH-3', 'picked'], ['CRASH-4', 'packed'], ['CRASH-6', 'delivered'])
{
	my ($no, $to) = @$move;
	$node->safe_psql('postgres',
		"SELECT orderflow.transition(id, '$to', 'after checkpoint')"
		  . " FROM orderflow.orders WHERE order_no = '$no'");
	$committed_state{$no} = $to;
}

# The whole committed history, hashes included, to compare after recovery.
my $history_sql = q{
	SELECT string_agg(o.order_no || ':' || e.seq || ':'
					  || coalesce(e.from_state::text, '-') || '>' || e.to_state::text
					  || ':' || encode(e.hash, 'hex'), E'\n' ORDER BY o.order_no, e.seq)
	  FROM orderflow.order_events e JOIN orderflow.orders o ON o.id = e.order_id
};
my $history_before = $node->safe_psql('postgres', $history_sql);
my $states_sql = q{
	SELECT string_agg(order_no || '=' || state::text, ',' ORDER BY order_no)
	  FROM orderflow.orders
};
my $states_before = $node->safe_psql('postgres', $states_sql);
is( $states_before,
	join(',', map { "$_=$committed_state{$_}" } sort keys %committed_state),
	'committed states before the crash');

$node->kill9;
$inflight->kill_kill;

ok(restart_after_kill($node), 'server restarted after the crash') or BAIL_OUT('no restart');

is($node->safe_psql('postgres', $states_sql),
	$states_before, 'every order is in its last committed state');
is($node->safe_psql('postgres', $history_sql),
	$history_before, 'every committed audit row is there, unchanged, and no other');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM orderflow.orders WHERE order_no = 'CRASH-UNCOMMITTED'"),
	'0',
	'the uncommitted order is gone');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM orderflow.order_events WHERE reason = 'uncommitted cancel'"
		  . " OR to_state::text = 'cancelled'"),
	'0',
	'no audit row of the uncommitted transitions survived');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(o.order_no || ' ' || v.seq || ' ' || v.problem, '; ')
		  FROM orderflow.orders o, orderflow.verify_history(o.id) v}),
	'',
	'verify_history finds no broken link in any order');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(o.order_no, ',')
		  FROM orderflow.orders o
		 WHERE o.history_seq <> (SELECT count(*) FROM orderflow.order_events e
								  WHERE e.order_id = o.id)}),
	'',
	'history_seq equals the number of events of every order');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderflow.orders'),
	'6', 'six orders');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderflow.order_events'),
	# order n has its creation event and n + 1 steps; 3 more after the checkpoint
	sum(map { $_ + 2 } 1 .. 6) + 3,
	'as many audit rows as committed transitions');

# The chain continues where the committed history ended.
$node->safe_psql('postgres',
	"SELECT orderflow.transition(id, 'cancelled', 'after recovery', 'approved')"
	  . " FROM orderflow.orders WHERE order_no = 'CRASH-1'");
is( $node->safe_psql('postgres', q{
		SELECT o.state::text || ' ' || o.history_seq || ' '
			   || (SELECT count(*) FROM orderflow.verify_history(o.id))
		  FROM orderflow.orders o WHERE o.order_no = 'CRASH-1'}),
	'cancelled 4 0',
	'a transition after recovery extends the chain, which still verifies');

$node->stop;
done_testing();
