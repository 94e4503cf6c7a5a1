"""The job side: the scheduler, admission, retention, kept inputs and the job service. Nothing here knows of Discord."""
