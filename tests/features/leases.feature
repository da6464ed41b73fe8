Feature: A crashed worker's job is rescued and its late writes refused
  A worker holds a job under a lease and renews it while it works. When a
  worker dies, its lease runs out; the rescuer takes the job back and counts
  the lost attempt as a failure. If the old worker comes back, nothing it
  writes changes the job that another worker now runs.

  Background:
    Given a queue that waits 10 seconds after the first failure, doubling each time
    And leases of 30 seconds

  Scenario: A heartbeat keeps the job
    Given a learner enqueued a job allowed 3 retries
    When worker "w1" claims work
    And 20 seconds pass
    And worker "w1" sends a heartbeat
    And 20 seconds pass
    And the rescuer runs
    Then the rescuer took back 0 jobs
    And the job is executing, held by worker "w1"

  Scenario: An expired lease is rescued, retried, and the old holder is fenced off
    Given a learner enqueued a job allowed 3 retries
    When worker "w1" claims work
    And 31 seconds pass
    And the rescuer runs
    Then the rescuer took back 1 job
    And the job is pending, with 1 failed attempt
    When 10 seconds pass
    And worker "w2" claims work
    Then worker "w2" holds the job on attempt 2
    When worker "w1" sends a heartbeat
    Then worker "w1" is told its lease was lost
    When worker "w1" completes the job with result {"stdout": "stale"}
    Then worker "w1" is told its lease was lost
    When worker "w2" completes the job with result {"stdout": "fresh"}
    Then the job is complete with result {"stdout": "fresh"}

  Scenario: An expired lease with no retries left fails the job
    Given a learner enqueued a job allowed 0 retries
    When worker "w1" claims work
    And 31 seconds pass
    And the rescuer runs
    Then the rescuer took back 1 job
    And the job has failed with an error that names worker "w1"
