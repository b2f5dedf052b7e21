"""The two designs a team would otherwise pick, for side-by-side figures (issue 5): the same
public contract, the same rules and ledger (the product's decision code), another bid pipeline.

- sync: the bid's request decides it, in its own transaction, under the auction's row lock, and
  broadcasts after commit (as iragm/fishauctions does);
- naive: the request stores the bid and sends one Celery task per bid to one shared queue,
  consumed by a prefork pool with Celery's usual defaults; each task locks the auction and
  decides its one bid, so bids can be decided out of position order.

Deployed by bench/stack.py (`design=`): every Django process of the stack runs with
DJANGO_SETTINGS_MODULE=bench.baselines.settings and BENCH_DESIGN=sync|naive; for naive the stack
also starts the prefork worker (bench.baselines.tasks). Never part of the product.
"""

# The naive baseline's one shared queue (bench.baselines.tasks routes to it, bench/stack.py's
# prefork worker consumes it); here because the stack must not import Django or Celery.
NAIVE_QUEUE = "bench.naive"
