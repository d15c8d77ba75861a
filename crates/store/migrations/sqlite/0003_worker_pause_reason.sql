-- Why a worker is paused (POST /workers/{id} "pause" with a reason); NULL when it is not paused.
ALTER TABLE workers ADD COLUMN pause_reason TEXT;
