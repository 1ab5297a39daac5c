# schedule_jobs() with pg_cron preloaded: the jobs are registered (also when
# pg_cron lives in another database, through dblink), registering twice
# changes nothing, and the sync job turns an inbox payload into an order on
# its own within two minutes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'orderflow,pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', q{
	CREATE EXTENSION orderflow;
	CREATE EXTENSION dblink;
	SELECT orderflow.add_sku('CR-A', 'A', 10.00);
	SELECT orderflow.add_shop('cron-web', 'generic');
});

# pg_cron lives in "postgres", orderflow in "shop".
is($node->safe_psql('shop', 'SELECT count(*) FROM orderflow.schedule_jobs()'),
	'6', 'schedule_jobs registers the six jobs from another database');
my $jobs = q{SELECT string_agg(jobname || ' ' || schedule || ' ' || database || ' ' || command, E'\n' ORDER BY jobname) FROM cron.job};
my $expected = join("\n",
	'orderflow:shop:allocator-compaction */10 * * * * shop SELECT orderflow.compact_stock()',
	'orderflow:shop:backorder-fill * * * * * shop SELECT orderflow.fill_backorders()',
	'orderflow:shop:payment-deadlines * * * * * shop SELECT orderflow.expire_unpaid()',
	'orderflow:shop:payment-reminders * * * * * shop SELECT orderflow.queue_payment_reminders()',
	'orderflow:shop:reservation-expiry * * * * * shop SELECT orderflow.expire_reservations()',
	'orderflow:shop:sync * * * * * shop SELECT orderflow.job_sync()');
is($node->safe_psql('postgres', $jobs), $expected, 'cron.job holds the jobs for database shop');
$node->safe_psql('shop', 'SELECT count(*) FROM orderflow.schedule_jobs()');
is($node->safe_psql('postgres', $jobs), $expected, 'registering again changes nothing');

# A payload waits in the inbox; nobody calls sync.
$node->safe_psql('shop', q{
	SELECT orderflow.ingest(s.id, jsonb_build_object('order_no', 'CR-1', 'status', 'paid',
		'created_at', '2026-01-01T00:00:00Z', 'currency', 'CNY',
		'receiver', jsonb_build_object('name', 'N', 'phone', '13000130000', 'address', 'A'),
		'lines', jsonb_build_array(jsonb_build_object('sku', 'CR-A', 'qty', 1, 'unit_price', '10'))))
	  FROM orderflow.shops s WHERE s.name = 'cron-web'});
my $synced = 0;
for (my $i = 0; $i < 150; $i++)
{
	if ($node->safe_psql('shop', q{SELECT count(*) FROM orderflow.orders WHERE order_no = 'CR-1'}) eq '1')
	{
		$synced = 1;
		last;
	}
	sleep 1;
}
ok($synced, 'the sync job created the order within two minutes');
is($node->safe_psql('shop', q{SELECT status || ' ' || result FROM orderflow.inbox}),
	'done new', 'the inbox row is done');
like($node->safe_psql('postgres',
	q{SELECT string_agg(DISTINCT status, ',') FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'orderflow:shop:sync'}),
	qr/succeeded/, 'pg_cron records the sync job as succeeded');

is($node->safe_psql('shop', 'SELECT orderflow.unschedule_jobs()'), '6', 'unschedule_jobs removes them');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0', 'cron.job is empty');

# pg_cron in the same database as orderflow.
$node->safe_psql('postgres', 'CREATE EXTENSION orderflow');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orderflow.schedule_jobs()'), '6',
	'schedule_jobs works where pg_cron is installed');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT database, ',') FROM cron.job}),
	'postgres', 'the jobs run in this database');
is($node->safe_psql('postgres', 'SELECT orderflow.unschedule_jobs()'), '6', 'and are removed again');

# Without dblink, a database other than pg_cron's gets a clear error.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION orderflow');
my ($ret, $stdout, $stderr) = $node->psql('other', 'SELECT orderflow.schedule_jobs()');
like($stderr, qr/dblink is not installed/, 'error names what is missing');

$node->stop;
done_testing();
