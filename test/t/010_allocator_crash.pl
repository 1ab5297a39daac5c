# Crash loop for the stock allocator.
#
# The counters of src/allocator.c live in shared memory and are rebuilt
# from the tables after a crash.  A pgbench mix of every operation that
# moves stock (reserve and commit, reserve and roll back, savepoints,
# holds with a time to live and their expiry, orders created and
# allocated, cancelled orders, receipts that fill back-orders, releases,
# downward adjustments, ledger compaction) runs with several clients while
# the postmaster is killed with SIGKILL, over and over.  After every
# restart (retried as in PostgreSQL's 017_shm.pl, while orphaned backends
# still hold the old shared memory):
#
# - available() answers from the durable records while no counter is
#   loaded, takes none, and agrees with the counters once they are;
# - check_stock() is empty once every counter has been loaded again;
# - no SKU is oversold: on hand minus held, from the tables, is >= 0;
# - every reservation whose COMMIT a client saw return is still there;
# - amcheck finds nothing wrong in orderflow's btree indexes;
#
# and no pgbench client ever failed with an SQL error (only with the
# connection losses of the crashes).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use OrderflowCrash;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $crashes = 10;
my $clients = 6;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'orderflow'
log_statement = none
max_connections = 30
});
$node->start;

my $db = 'postgres';
$node->safe_psql($db, q{
CREATE EXTENSION orderflow;
CREATE EXTENSION amcheck;
SELECT orderflow.add_shop('crash', 'generic', '{"allow_split": true}');
SELECT orderflow.add_warehouse('W1', 'one', 10);
SELECT orderflow.add_warehouse('W2', 'two', 20);
SELECT orderflow.add_bin('W1', 'B1');
SELECT orderflow.add_bin('W2', 'B2');
SELECT orderflow.add_sku('K' || i, 'crash SKU ' || i, 10) FROM generate_series(1, 4) i;
SELECT orderflow.receive_stock('K' || i, w, 'B' || right(w, 1), 150)
  FROM generate_series(1, 4) i, (VALUES ('W1'), ('W2')) v(w);
-- KD: the SKU whose reservations the tracking client records.
SELECT orderflow.add_sku('KD', 'durability SKU', 1);
SELECT orderflow.receive_stock('KD', 'W1', 'B1', 1000000);

CREATE SEQUENCE crash_order_no;

-- A paid order with three lines, approved and allocated with a policy.
CREATE FUNCTION crash_new_order(k1 int, k2 int, k3 int, q int, policy text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  oid bigint;
BEGIN
  INSERT INTO orderflow.orders (shop_id, order_no, state, paid_at)
  SELECT s.id, 'C' || nextval('crash_order_no'), 'paid', now()
    FROM orderflow.shops s WHERE s.name = 'crash'
  RETURNING id INTO oid;
  INSERT INTO orderflow.order_lines (order_id, sku, qty, unit_price)
  VALUES (oid, 'K' || k1, q, 10), (oid, 'K' || k2, q, 10), (oid, 'K' || k3, 1, 10);
  PERFORM orderflow.transition(oid, 'approved');
  PERFORM orderflow.allocate(oid, policy);
END $$;

-- Cancel some open order (locked first, so nobody changes it meanwhile).
CREATE FUNCTION crash_cancel_one() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  oid bigint;
BEGIN
  SELECT o.id INTO oid FROM orderflow.orders o
   WHERE o.state::text IN ('approved', 'backordered', 'allocated')
     AND o.id >= (SELECT floor(random() * max(x.id)) FROM orderflow.orders x)
   ORDER BY o.id LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF oid IS NOT NULL THEN
    PERFORM orderflow.transition(oid, 'cancelled', 'crash test');
  END IF;
END $$;

-- Release some hold that no order has claimed (not the tracked KD ones).
CREATE FUNCTION crash_release_one() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM orderflow.release(r.id) FROM (
    SELECT r.id FROM orderflow.reservations r JOIN orderflow.skus s ON s.id = r.sku_id
     WHERE r.status = 'held' AND r.order_id IS NULL AND s.code <> 'KD'
       AND r.id >= (SELECT floor(random() * max(x.id)) FROM orderflow.reservations x)
     ORDER BY r.id LIMIT 1) r;
END $$;

-- Take a unit away (count correction); refused with OF023 when it is
-- reserved or not in the bin, which is fine here.
CREATE FUNCTION crash_adjust_down(k int, w int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM orderflow.adjust_stock('K' || k, 'W' || w, 'B' || w, -1, 'crash test count');
EXCEPTION WHEN SQLSTATE 'OF023' THEN
  NULL;
END $$;
});

# The pgbench mix, file name => script (name@weight).
my %scripts = (
	'reserve_commit@30' => q{
\set k random(1, 4)
\set w random(1, 2)
\set q random(1, 3)
SELECT orderflow.reserve('K' || :k, 'W' || :w, :q);
},
	'reserve_rollback@10' => q{
\set k random(1, 4)
\set w random(1, 2)
BEGIN;
SELECT orderflow.reserve('K' || :k, 'W' || :w, 2);
ROLLBACK;
},
	'reserve_savepoint@10' => q{
\set k random(1, 4)
\set w random(1, 2)
BEGIN;
SELECT orderflow.reserve('K' || :k, 'W' || :w, 1);
SAVEPOINT a;
SELECT orderflow.reserve('K' || :k, 'W' || :w, 2);
ROLLBACK TO SAVEPOINT a;
COMMIT;
},
	'reserve_ttl@5' => q{
\set k random(1, 4)
\set w random(1, 2)
SELECT orderflow.reserve('K' || :k, 'W' || :w, 1, NULL, '1 second');
},
	'expire@3' => q{
SELECT orderflow.expire_reservations(50);
},
	'allocate@15' => q{
\set a random(1, 4)
\set b random(1, 4)
\set c random(1, 4)
\set q random(1, 3)
\set p random(1, 3)
SELECT crash_new_order(:a, :b, :c, :q, (ARRAY['wait', 'split', 'cancel_missing'])[:p]);
},
	'cancel@8' => q{
SELECT crash_cancel_one();
},
	'receive@8' => q{
\set k random(1, 4)
\set w random(1, 2)
\set q random(1, 8)
SELECT orderflow.receive_stock('K' || :k, 'W' || :w, 'B' || :w, :q);
},
	'fill_backorders@3' => q{
SELECT orderflow.fill_backorders(5);
},
	'release@8' => q{
SELECT crash_release_one();
},
	'adjust@2' => q{
\set k random(1, 4)
\set w random(1, 2)
SELECT crash_adjust_down(:k, :w);
},
	'compact@1' => q{
SELECT orderflow.compact_stock('0 seconds');
},);

my @script_opts;
for my $name (sort keys %scripts)
{
	(my $file = $name) =~ s/\@\d+$//;
	$file = $node->basedir . "/$file.pgbench";
	PostgreSQL::Test::Utils::append_to_file($file, $scripts{$name})
	  unless -e $file;
	(my $weight = $name) =~ s/^.*\@//;
	push @script_opts, '-f', "$file\@$weight";
}

# The tracking client: reserves one KD at a time and prints the id only
# after its COMMIT has returned.
my $track_file = $node->basedir . '/track.sql';
{
	my $one = "BEGIN;\n"
	  . "SELECT orderflow.reserve('KD', 'W1', 1) AS id \\gset\n"
	  . "COMMIT;\n"
	  . "\\echo committed :id\n";
	PostgreSQL::Test::Utils::append_to_file($track_file, $one x 20000);
}

my @conn_opts = ('-h', $node->host, '-p', $node->port);
my %committed;    # reservation ids seen committed, over all rounds
my $sql_errors = '';

# The checks that must hold after every recovery.
sub check_after_recovery
{
	my ($round) = @_;

	# Right after the restart no counter is in shared memory: available()
	# answers from the durable records, and asking takes no counter.
	my $every_pair = q{
SELECT string_agg(format('%s/%s=%s', s.code, w.code, orderflow.available(s.code, w.code)),
                  ' ' ORDER BY s.code, w.code)
  FROM orderflow.skus s, orderflow.warehouses w};
	my $from_records = $node->safe_psql($db, $every_pair);
	is($node->safe_psql($db, 'SELECT count(*) FROM orderflow.stock_counters()'),
		'0', "round $round: asking for every SKU and warehouse took no counter");

	# Load every counter again (a reservation that cannot be met loads the
	# counter and takes nothing), then compare counters with the ledger.
	$node->safe_psql($db, q{
SELECT count(orderflow.reserve(s.code, w.code, 2147483647))
  FROM orderflow.skus s, orderflow.warehouses w});
	is($node->safe_psql($db, $every_pair), $from_records,
		"round $round: the loaded counters give what available() read from the records");
	is( $node->safe_psql($db,
			q{SELECT coalesce(string_agg(format('%s/%s: %s', sku, warehouse, problem), '; '), '')
			    FROM orderflow.check_stock()}),
		'',
		"round $round: check_stock() is empty after recovery");

	is( $node->safe_psql($db, q{
WITH on_hand AS (
  SELECT sku_id, warehouse_id, sum(qty) AS qty FROM (
    SELECT sku_id, warehouse_id, qty FROM orderflow.stock_balances
    UNION ALL
    SELECT sku_id, warehouse_id, qty FROM orderflow.stock_movements) x
  GROUP BY 1, 2
), held AS (
  SELECT sku_id, warehouse_id, sum(qty) AS qty FROM orderflow.reservations
   WHERE status = 'held' GROUP BY 1, 2
)
SELECT coalesce(string_agg(format('sku %s warehouse %s: on hand %s, held %s',
                                  h.sku_id, h.warehouse_id, coalesce(o.qty, 0), h.qty), '; '), '')
  FROM held h LEFT JOIN on_hand o USING (sku_id, warehouse_id)
 WHERE coalesce(o.qty, 0) - h.qty < 0}),
		'',
		"round $round: nothing oversold (on hand - held >= 0 everywhere)");

	my @ids = sort { $a <=> $b } keys %committed;
	my $missing = $node->safe_psql($db,
		    "SELECT coalesce(string_agg(i::text, ','), '') FROM unnest('{"
		  . join(',', @ids)
		  . "}'::bigint[]) i WHERE NOT EXISTS (SELECT FROM orderflow.reservations r"
		  . " WHERE r.id = i AND r.status = 'held')");
	is($missing, '',
		"round $round: all " . scalar(@ids) . " reservations seen committed are held");

	amcheck_ok($node, $db, "round $round");
	return;
}

# First, without a crash: after a few seconds of the mix, the counters as
# the clients left them (not reloaded) agree with the ledger.
{
	local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'pgbench', '-n', '-c', $clients, '-j', 2, '-T', 4,
			'--max-tries=10', @script_opts, @conn_opts, $db
		],
		'<', \undef, '>', \$out, '2>', \$err);
	my ($processed) = $out =~ /actually processed: (\d+)/;
	ok(($processed // 0) > 0 && $err !~ /ERROR:/,
		"the mix ran " . ($processed // 0) . " transactions without a crash and without errors")
	  or diag("pgbench:\n$out\n$err");
	is( $node->safe_psql($db,
			q{SELECT coalesce(string_agg(format('%s/%s: %s', sku, warehouse, problem), '; '), '')
			    FROM orderflow.check_stock()}),
		'',
		'check_stock() is empty after the mix, before any crash');
}

for my $round (1 .. $crashes)
{
	local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
	my ($bench_out, $bench_err, $track_out, $track_err) = ('', '', '', '');
	my $bench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $clients, '-j', 2, '-T', 120,
			'--max-tries=10', @script_opts, @conn_opts, $db
		],
		'<', \undef, '>', \$bench_out, '2>', \$bench_err);
	my $track = IPC::Run::start(
		[ 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-f', $track_file, @conn_opts, '-d', $db ],
		'<', \undef, '>', \$track_out, '2>', \$track_err);

	# Let the mix run for 1 to 3 seconds, then pull the plug.
	my $deadline = time + 1 + int(rand(3));
	while (time < $deadline)
	{
		$bench->pump_nb if $bench->pumpable;
		$track->pump_nb if $track->pumpable;
		usleep(50_000);
	}
	$node->kill9;

	# The clients notice the crash and exit.
	$bench->finish;
	$track->finish;

	my $n = 0;
	for my $line (split /\n/, $track_out)
	{
		if ($line =~ /^committed (\d+)$/)
		{
			$committed{$1} = 1;
			$n++;
		}
	}
	ok($n > 0, "round $round: the tracking client committed $n reservations before the crash");
	for my $line (split /\n/, $bench_err)
	{
		$sql_errors .= "round $round: $line\n" if $line =~ /ERROR:/;
	}
	my ($processed) = $bench_out =~ /actually processed: (\d+)/;
	ok(($processed // 0) > 0,
		"round $round: pgbench ran " . ($processed // 0) . " transactions before the crash")
	  or diag("pgbench:\n$bench_out\n$bench_err");

	ok(restart_after_kill($node), "round $round: the server restarts after kill -9");
	check_after_recovery($round);
}

is($sql_errors, '', 'no pgbench client failed with an SQL error');

# What the mix did, for the log.
note($node->safe_psql($db, q{
SELECT 'reservations: ' || string_agg(status || ' ' || n, ', ') FROM (
  SELECT status, count(*) AS n FROM orderflow.reservations GROUP BY 1 ORDER BY 1) x
UNION ALL
SELECT 'orders: ' || string_agg(state || ' ' || n, ', ') FROM (
  SELECT state::text, count(*) AS n FROM orderflow.orders GROUP BY 1 ORDER BY 1) x
UNION ALL
SELECT 'movements: ' || count(*) || ', compacted balances: '
       || (SELECT count(*) FROM orderflow.stock_balances) FROM orderflow.stock_movements}));

# On a server just restarted (so KD has no counter), available() counts
# the caller's own release as a counter would: not before it commits, then
# at once.
my $hold = $node->safe_psql($db, q{SELECT orderflow.reserve('KD', 'W1', 3)});
ok($hold ne '', 'a hold of 3 KD to release after the restart');
$node->restart;
my ($before, $counters, $released, $during, $after) = split /\n/,
  $node->safe_psql($db, qq{
BEGIN;
SELECT orderflow.available('KD', 'W1');
SELECT count(*) FROM orderflow.stock_counters();
SELECT orderflow.release($hold);
SELECT orderflow.available('KD', 'W1');
COMMIT;
SELECT orderflow.available('KD', 'W1');
});
is($counters, '0', 'after the restart available() read KD from the records');
is($released, 't', 'the hold is released');
is($during, $before, 'the release does not count before it commits');
is($after, $before + 3, '... and counts once it has');

$node->stop('fast');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC|TRAP:/,
	'no backend crashed on its own, no PANIC, no assertion failure');

done_testing();
