# Crash safety of the intake jobs (doc/intake.md: "After a crash,
# uncommitted work is simply gone and the payloads are still waiting"; SPEC,
# Jobs: every job is safe after a crash, with no double release).  First a
# session that gives holds back is terminated mid-transaction (its backend
# dies, the server and its shared-memory counters stay): nothing of it is
# kept.  Then a sync and a payment-deadline sweep are in flight, their
# pages written by a checkpoint, when the postmaster is killed.  After recovery nothing of
# them is left: the payloads they took wait again, the unpaid orders they
# cancelled are unpaid and still hold their checkout holds.  Running the
# jobs again then creates each order exactly once, cancels each overdue
# order once, and gives each hold back once.

use strict;
use warnings;

use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use OrderflowCrash;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('intake_crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'orderflow'\n");
$node->start;

my $db = 'postgres';
$node->safe_psql($db, q{
CREATE EXTENSION orderflow;
CREATE EXTENSION amcheck;
SELECT orderflow.add_sku('IC-A', 'crash item', 10.00);
SELECT orderflow.add_warehouse('IC-W', 'crash warehouse');
SELECT orderflow.add_bin('IC-W', 'IC-B');
SELECT orderflow.receive_stock('IC-A', 'IC-W', 'IC-B', 100);
SELECT orderflow.add_shop('ic-web', 'generic', '{"payment_timeout": "30 minutes"}');
-- Payload k: order IC-k, paid when k is even; created long ago, so the
-- unpaid ones are past their payment deadline as soon as they exist.
CREATE FUNCTION ic_payload(k integer) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('order_no', 'IC-' || k,
		'status', CASE WHEN k % 2 = 0 THEN 'paid' ELSE 'pending_payment' END,
		'created_at', '2020-01-01T10:00:00Z', 'currency', 'CNY',
		'receiver', jsonb_build_object('name', 'N' || k, 'address', 'A' || k, 'phone', '1330000' || lpad(k::text, 4, '0')),
		'lines', jsonb_build_array(jsonb_build_object('sku', 'IC-A', 'qty', 1, 'unit_price', '10')))
$$;
SELECT count(orderflow.ingest(s.id, ic_payload(k)))
  FROM orderflow.shops s, generate_series(1, 50) k WHERE s.name = 'ic-web';
});

# The first 20 payloads (paid ones first: IC-2 ... IC-40) are synced and
# committed; then a checkout hold of 1 unit under each order number of the
# unpaid ones still to come (IC-1, IC-3, ..., IC-49), committed too.
$node->safe_psql($db, 'SELECT orderflow.sync(20)');
$node->safe_psql($db, q{
SELECT count(orderflow.reserve('IC-A', 'IC-W', 1, 'IC-' || k, '1 day'))
  FROM generate_series(1, 49, 2) k});

my $snapshot_sql = q{
SELECT (SELECT count(*) FROM orderflow.orders) || ' orders, '
	|| (SELECT count(*) FROM orderflow.inbox WHERE status = 'pending') || ' waiting, '
	|| (SELECT count(*) FROM orderflow.orders WHERE state::text = 'cancelled') || ' cancelled, '
	|| (SELECT count(*) FROM orderflow.reservations WHERE status = 'held') || ' held, '
	|| orderflow.available('IC-A', 'IC-W') || ' available, '
	|| (SELECT count(*) FROM orderflow.outbox) || ' notifications'};
my $before = $node->safe_psql($db, $snapshot_sql);
is($before, '20 orders, 30 waiting, 0 cancelled, 25 held, 75 available, 0 notifications',
	'committed state before the crash');

# A session that gives every hold back and is then terminated: its backend
# dies with the transaction open, and the shared-memory counters, which
# outlive it, must not keep the releases.
{
	my ($vin, $vout, $verr) = ('', '', '');
	my $vtimer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	my $victim = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr($db), '-f', '-' ],
		'<', \$vin, '>', \$vout, '2>', \$verr, $vtimer);
	$vin .= q{
BEGIN;
SELECT 'released ' || count(orderflow.release(id)) FROM orderflow.reservations WHERE status = 'held';
SELECT 'pid ' || pg_backend_pid();
};
	$victim->pump until $vout =~ /pid \d+/ || $vtimer->is_expired;
	my ($pid) = $vout =~ /pid (\d+)/;
	like($vout, qr/released 25/, 'the terminated session had released the 25 holds');
	$node->safe_psql($db, "SELECT pg_terminate_backend($pid, 10000)");
	$victim->finish;
	is($node->safe_psql($db, $snapshot_sql), $before,
		'after its backend is terminated, nothing of its releases is left: holds and counters as before');
	is($node->safe_psql($db, 'SELECT count(*) FROM orderflow.check_stock()'),
		'0', 'check_stock() is empty after the terminated session');
}

# In flight: a sync of the other 30 payloads (5 paid, 25 unpaid), then the
# deadline sweep that cancels the 25 unpaid orders, which releases their
# checkout holds.
my ($in, $out, $err) = ('', '', '');
my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $inflight = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', '-' ],
	'<', \$in, '>', \$out, '2>', \$err, $timer);
$in .= q{
BEGIN;
SELECT 'synced ' || new FROM orderflow.sync();
SELECT 'expired ' || orderflow.expire_unpaid();
SELECT 'in-flight ' || (SELECT count(*) FROM orderflow.orders) || ' '
	   || (SELECT count(*) FROM orderflow.reservations WHERE status = 'held');
};
$inflight->pump until $out =~ /in-flight \d+ \d+/ || $timer->is_expired;
like($out, qr/synced 30\nexpired 25\nin-flight 50 0/,
	'the in-flight sync created 30 orders and the sweep cancelled 25, releasing every hold');
is($err, '', 'no error in the in-flight transaction');

# Uncommitted tuples on disk, so that recovery must treat them as aborted.
$node->safe_psql($db, 'CHECKPOINT');

$node->kill9;
$inflight->kill_kill;

ok(restart_after_kill($node), 'server restarted after the crash') or BAIL_OUT('no restart');

is($node->safe_psql($db, $snapshot_sql), $before,
	'after recovery: the payloads wait again, the unpaid orders are not cancelled, every hold is held');
is($node->safe_psql($db, 'SELECT count(*) FROM orderflow.check_stock()'),
	'0', 'check_stock() is empty after recovery');

# The jobs run again, each twice: the second run finds nothing to do.
is($node->safe_psql($db, 'SELECT new || \' \' || rejected FROM orderflow.sync()'),
	'30 0', 'sync creates the 30 orders');
is($node->safe_psql($db, 'SELECT new FROM orderflow.sync()'), '0', 'a second sync finds nothing');
is($node->safe_psql($db, 'SELECT orderflow.expire_unpaid()'), '25',
	'the sweep cancels the 25 unpaid orders');
is($node->safe_psql($db, 'SELECT orderflow.expire_unpaid()'), '0', 'a second sweep finds nothing');

is( $node->safe_psql($db, q{
SELECT count(*) || ' orders, ' || count(DISTINCT order_no) || ' numbers, '
	|| count(*) FILTER (WHERE state::text = 'cancelled') || ' cancelled, '
	|| count(*) FILTER (WHERE state::text = 'paid') || ' paid'
  FROM orderflow.orders}),
	'50 orders, 50 numbers, 25 cancelled, 25 paid',
	'each payload made one order; each unpaid one is cancelled');
is( $node->safe_psql($db, q{
SELECT coalesce(string_agg(o.order_no, ','), '')
  FROM orderflow.orders o
 WHERE (SELECT count(*) FROM orderflow.order_events e WHERE e.order_id = o.id AND e.from_state IS NULL) <> 1
	OR (SELECT count(*) FROM orderflow.order_events e WHERE e.order_id = o.id AND e.to_state::text = 'cancelled')
	   <> CASE WHEN o.state::text = 'cancelled' THEN 1 ELSE 0 END
	OR (SELECT count(*) FROM orderflow.verify_history(o.id)) <> 0}),
	'', 'every order was created once and cancelled at most once, and its history verifies');
is( $node->safe_psql($db, q{
SELECT (SELECT count(*) FROM orderflow.reservations WHERE status = 'held') || ' held, '
	|| orderflow.available('IC-A', 'IC-W') || ' available, '
	|| (SELECT count(*) FROM orderflow.outbox WHERE topic = 'order_cancelled') || ' cancellation notices, '
	|| (SELECT count(*) FROM orderflow.check_stock()) || ' stock problems'}),
	'0 held, 100 available, 25 cancellation notices, 0 stock problems',
	'every hold was given back once');

amcheck_ok($node, $db, 'after the jobs ran again');

$node->stop;
done_testing();
