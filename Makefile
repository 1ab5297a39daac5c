# orderflow: PGXS build
#
#   make && make install          build and install into the server of PG_CONFIG
#   make installcheck             regression, isolation and TAP tests against a
#                                 running server (.ci/test runs them all)

EXTENSION = orderflow
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = orderflow
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script is assembled from the parts in src/sql, in name order.
SQL_PARTS = $(sort $(wildcard src/sql/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard src/upgrade/$(EXTENSION)--*--*.sql)

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=$(EXTENSION)

ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation/output \
	--load-extension=$(EXTENSION)

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = $(DATA_built) results regression.diffs regression.out \
	test/isolation/output tmp_check

WERROR ?= -Werror
PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(WERROR)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(DATA_built): $(SQL_PARTS) $(EXTENSION).control
	cat $(SQL_PARTS) > $@

# pgTAP tests run with pg_prove against the server of PGHOST/PGPORT.
.PHONY: pgtap
pgtap:
	pg_prove --ext .sql --failures test/pgtap/*.sql

# Format C sources with pg_bsd_indent (Debian package pg-bsd-indent) and the
# typedef list in src/, with the options pgindent uses (and, as pgindent
# does, no padding between a function's return type and its "*").
INDENT_OPTS = -bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 \
	-i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4
.PHONY: indent
indent:
	for f in src/*.c src/*.h; do \
		pg_bsd_indent $(INDENT_OPTS) -U$(srcdir)/src/typedefs.list $$f $$f.indented && \
		sed -E 's/^([A-Za-z_][A-Za-z0-9_]*) +\*$$/\1 */' $$f.indented > $$f || exit 1; \
		rm -f $$f.indented; \
	done
