import cProfile, pstats, pytest, time
from tests.notifications.test_outage import populate
from sealmail.notifications.events import record_line_events


@pytest.mark.django_db
def test_prof():
    ids = populate(1000)
    pr = cProfile.Profile()
    pr.enable()
    t = time.time()
    record_line_events(ids, "down")
    print("event", time.time() - t)
    pr.disable()
    pstats.Stats(pr).sort_stats("cumulative").print_stats(40)
